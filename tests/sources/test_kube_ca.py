"""The CA's cluster halves against the API server double: its root in a Secret (`SecretCAStore`) and node
authorization by TokenReview (`TokenReviewAuthenticator`), alone and composed in a ControlPlane serving a
node agent's certificate client."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Final

import pytest
import pytest_asyncio
from cryptography import x509

from apidouble import ApiServerDouble
from apidouble.operations import TokenUser
from apidouble.paths import parse_resource_path
from controlplane.app import ControlPlane
from controlplane.ca.authority import load_or_generate_authority
from controlplane.ca.authorization import AuthenticationError, NodeIdentity, RefusalReason
from controlplane.ca.bundle import TrustBundle, verify_chain
from controlplane.ca.errors import AuthenticatorUnavailableError, CAStoreConflictError, CAStoreError
from controlplane.ca.identity import SpiffeId
from controlplane.ca.store import CAMaterial
from controlplane.cli import parse_settings
from controlplane.sources.kube.castore import (
    CERTIFICATE_KEY,
    CHAIN_KEY,
    PRIVATE_KEY_KEY,
    TRUST_BUNDLE_KEY,
    SecretCAStore,
)
from controlplane.sources.kube.client import ClientSettings, KubeApi, connect
from controlplane.sources.kube.tokenreview import (
    DEFAULT_NODE_SERVICE_ACCOUNT,
    NODE_NAME_EXTRA,
    TokenReviewAuthenticator,
)
from nodeagent.identity.client import GrpcCertificateClient, TokenFile
from nodeagent.identity.errors import CertificateDeniedError
from nodeagent.identity.keys import generate_key
from tests.ca.builders import FakeClock, pem_certs
from tests.manifests.layout import find, install_documents
from tests.sources.cluster import populate_core, until

NAMESPACE: Final = "nodemesh-system"
SECRET: Final = "nodemesh-ca"
REVIEWS: Final = "/apis/authentication.k8s.io/v1/tokenreviews"
SECRET_PATH: Final = f"/api/v1/namespaces/{NAMESPACE}/secrets"


def agent_token(
    node: str, *, username: str = DEFAULT_NODE_SERVICE_ACCOUNT, audience: str = "nodemesh-ca"
) -> TokenUser:
    """What the API server knows of a node agent's projected, pod-bound token."""
    return TokenUser(
        username=username,
        groups=("system:serviceaccounts", "system:serviceaccounts:nodemesh-system", "system:authenticated"),
        extra={NODE_NAME_EXTRA: (node,), "authentication.kubernetes.io/pod-name": (f"nodemesh-node-{node}",)},
        audiences=(audience,),
    )


@pytest_asyncio.fixture
async def api() -> AsyncIterator[ApiServerDouble]:
    async with ApiServerDouble() as server:
        server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        yield server


@pytest_asyncio.fixture
async def kube(api: ApiServerDouble, tmp_path: Path) -> AsyncIterator[KubeApi]:
    async with connect(ClientSettings(kubeconfig=api.kubeconfig(tmp_path / "kubeconfig"))) as kube_api:
        yield kube_api


def stored_secret(api: ApiServerDouble) -> dict[str, bytes]:
    secret = api.get("v1", "Secret", SECRET, NAMESPACE)
    assert secret["type"] == "Opaque"
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


def root_of(material: CAMaterial) -> x509.Certificate:
    return x509.load_pem_x509_certificate(material.certificate_pem)


# -- the root in a Secret ------------------------------------------------------------------------------


async def test_the_first_start_creates_the_secret_and_a_restart_loads_the_same_root(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    clock = FakeClock()
    first = await load_or_generate_authority(SecretCAStore(kube, NAMESPACE, SECRET), "cluster.local", clock)
    data = stored_secret(api)
    assert set(data) == {CERTIFICATE_KEY, PRIVATE_KEY_KEY, CHAIN_KEY, TRUST_BUNDLE_KEY}
    assert data[CERTIFICATE_KEY] == first.material().certificate_pem
    assert data[PRIVATE_KEY_KEY] == first.material().key_pem

    restarted = await load_or_generate_authority(
        SecretCAStore(kube, NAMESPACE, SECRET), "cluster.local", clock
    )
    assert restarted.material().key_pem == first.material().key_pem
    assert restarted.trust_bundle.pem() == first.trust_bundle.pem()
    assert api.requests[("POST", SECRET_PATH)] == 1


class RacingStore:
    """The real Secret store, but `load` returns only once every racer has loaded: all see no Secret, as
    replicas starting at the same moment do, before any of them saves."""

    def __init__(self, inner: SecretCAStore, barrier: asyncio.Barrier) -> None:
        self._inner = inner
        self._barrier = barrier
        self._raced = False

    async def load(self) -> CAMaterial | None:
        material = await self._inner.load()
        if not self._raced:
            self._raced = True
            await self._barrier.wait()
        return material

    async def save(self, material: CAMaterial) -> None:
        await self._inner.save(material)


async def test_replicas_racing_to_create_the_root_end_up_with_one(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    barrier = asyncio.Barrier(3)
    stores = [RacingStore(SecretCAStore(kube, NAMESPACE, SECRET), barrier) for _ in range(3)]
    async with asyncio.timeout(30):
        cas = await asyncio.gather(
            *(load_or_generate_authority(s, "cluster.local", FakeClock()) for s in stores)
        )
    assert api.requests[("POST", SECRET_PATH)] == 3, "every replica tried to create its own root"
    keys = {ca.material().key_pem for ca in cas}
    assert keys == {stored_secret(api)[PRIVATE_KEY_KEY]}
    assert len({ca.trust_bundle.pem() for ca in cas}) == 1


async def test_a_save_over_someone_elses_newer_write_is_a_conflict(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    clock = FakeClock()
    await load_or_generate_authority(SecretCAStore(kube, NAMESPACE, SECRET), "cluster.local", clock)
    mine, theirs = SecretCAStore(kube, NAMESPACE, SECRET), SecretCAStore(kube, NAMESPACE, SECRET)
    material = await mine.load()
    assert material is not None and await theirs.load() == material
    # Another replica rotates: a second root joins the bundle.
    second_root = await load_or_generate_authority(
        SecretCAStore(kube, NAMESPACE, "elsewhere"), "cluster.local", clock
    )
    rotated = CAMaterial(
        certificate_pem=material.certificate_pem,
        key_pem=material.key_pem,
        trust_bundle_pem=material.certificate_pem + second_root.material().certificate_pem,
    )
    assert rotated != material
    await theirs.save(rotated)
    with pytest.raises(CAStoreConflictError):
        await mine.save(material)
    assert await SecretCAStore(kube, NAMESPACE, SECRET).load() == rotated
    # After reading theirs, mine may write again.
    assert await mine.load() == rotated
    await mine.save(material)
    assert await SecretCAStore(kube, NAMESPACE, SECRET).load() == material


async def test_a_secret_without_a_key_or_with_bad_base64_is_refused(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": NAMESPACE},
            "type": "Opaque",
            "data": {CERTIFICATE_KEY: base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()},
        }
    )
    with pytest.raises(CAStoreError, match=PRIVATE_KEY_KEY):
        await SecretCAStore(kube, NAMESPACE, SECRET).load()
    api.patch("v1", "Secret", SECRET, {"data": {PRIVATE_KEY_KEY: "not*base64"}}, namespace=NAMESPACE)
    with pytest.raises(CAStoreError, match="base64"):
        await SecretCAStore(kube, NAMESPACE, SECRET).load()


async def test_an_unreachable_api_server_is_a_store_error(api: ApiServerDouble, kube: KubeApi) -> None:
    await api.stop()
    with pytest.raises(CAStoreError):
        await SecretCAStore(kube, NAMESPACE, SECRET).load()


# -- node authorization by TokenReview ----------------------------------------------------------------


async def test_a_node_agents_bound_token_proves_its_node(api: ApiServerDouble, kube: KubeApi) -> None:
    api.add_token("agent-a", agent_token("node-a"))
    authenticator = TokenReviewAuthenticator(kube, clock=FakeClock())
    assert await authenticator.authenticate("agent-a") == NodeIdentity(node="node-a")


@pytest.mark.parametrize(
    ("user", "message"),
    [
        (None, "not authenticated"),
        (agent_token("node-a", username="system:serviceaccount:shop:web"), "not of the node agent"),
        (TokenUser(username=DEFAULT_NODE_SERVICE_ACCOUNT, audiences=("nodemesh-ca",)), "not bound to a node"),
        (agent_token("node-a", audience="https://kubernetes.default.svc"), "not authenticated"),
    ],
    ids=["unknown-token", "wrong-service-account", "no-node-name", "wrong-audience"],
)
async def test_tokens_that_do_not_prove_a_node_are_refused(
    api: ApiServerDouble, kube: KubeApi, user: TokenUser | None, message: str
) -> None:
    if user is not None:
        api.add_token("candidate", user)
    authenticator = TokenReviewAuthenticator(kube, clock=FakeClock())
    with pytest.raises(AuthenticationError, match=message) as refused:
        await authenticator.authenticate("candidate")
    assert refused.value.reason is RefusalReason.INVALID_TOKEN
    assert api.requests[("POST", REVIEWS)] == 1


async def test_an_empty_token_is_refused_without_asking(api: ApiServerDouble, kube: KubeApi) -> None:
    with pytest.raises(AuthenticationError) as refused:
        await TokenReviewAuthenticator(kube, clock=FakeClock()).authenticate("")
    assert refused.value.reason is RefusalReason.MISSING_TOKEN
    assert api.requests[("POST", REVIEWS)] == 0


async def test_the_configured_service_account_and_audience_are_the_ones_checked(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    api.add_token("agent", agent_token("node-a", username="system:serviceaccount:mesh:agent", audience="x"))
    custom = TokenReviewAuthenticator(
        kube, clock=FakeClock(), audiences=("x",), service_account="system:serviceaccount:mesh:agent"
    )
    assert await custom.authenticate("agent") == NodeIdentity(node="node-a")
    with pytest.raises(AuthenticationError):
        await TokenReviewAuthenticator(kube, clock=FakeClock()).authenticate("agent")


async def test_an_unreachable_api_server_is_unavailable_not_a_refusal(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    api.add_token("agent-a", agent_token("node-a"))
    await api.stop()
    with pytest.raises(AuthenticatorUnavailableError):
        await TokenReviewAuthenticator(kube, clock=FakeClock()).authenticate("agent-a")


async def test_positive_answers_are_cached_briefly_and_refusals_not_at_all(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    clock = FakeClock()
    authenticator = TokenReviewAuthenticator(kube, clock=clock, cache_ttl=timedelta(seconds=5))
    with pytest.raises(AuthenticationError):
        await authenticator.authenticate("agent-a")
    api.add_token("agent-a", agent_token("node-a"))
    for _ in range(3):
        assert await authenticator.authenticate("agent-a") == NodeIdentity(node="node-a")
    assert api.requests[("POST", REVIEWS)] == 2

    # The pod went away: its token stops working once the cached answer expires.
    del api.operations.tokens["agent-a"]
    clock.advance(timedelta(seconds=4))
    assert await authenticator.authenticate("agent-a") == NodeIdentity(node="node-a")
    clock.advance(timedelta(seconds=2))
    with pytest.raises(AuthenticationError):
        await authenticator.authenticate("agent-a")
    assert api.requests[("POST", REVIEWS)] == 3


# -- RBAC: what these calls need is what the install grants ---------------------------------------------


async def test_the_install_grants_what_the_ca_store_and_token_reviews_request(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    docs = install_documents()
    deployment = find(docs, "Deployment", "nodemesh-controlplane")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    settings = parse_settings(container["args"])
    assert settings.ca_secret is not None
    assert (settings.ca_secret.namespace, settings.ca_secret.name) == (NAMESPACE, SECRET)
    assert settings.node_tokens is None  # so the cluster uses TokenReview

    api.add_token("agent-a", agent_token("node-a", audience=settings.token_audience))
    store = SecretCAStore(kube, settings.ca_secret.namespace, settings.ca_secret.name)
    await load_or_generate_authority(store, "cluster.local", FakeClock())
    material = await store.load()
    assert material is not None
    await store.save(material)
    authenticator = TokenReviewAuthenticator(
        kube,
        clock=FakeClock(),
        audiences=(settings.token_audience,),
        service_account=settings.node_service_account,
    )
    assert await authenticator.authenticate("agent-a") == NodeIdentity(node="node-a")

    role = find(docs, "Role", "nodemesh-controlplane")
    cluster_role = find(docs, "ClusterRole", "nodemesh-controlplane")
    verbs = {"GET": "get", "POST": "create", "PUT": "update"}
    seen = set()
    for method, path in api.requests:
        parsed = parse_resource_path(path)
        assert parsed is not None
        verb = verbs[method]
        seen.add((parsed.plural, verb))
        if parsed.plural == "secrets":
            assert parsed.namespace == role["metadata"]["namespace"]
            rules = [
                r
                for r in role["rules"]
                if "secrets" in r["resources"]
                and verb in r["verbs"]
                and (not r.get("resourceNames") or (parsed.name in r["resourceNames"]))
            ]
        else:
            rules = [
                r for r in cluster_role["rules"] if parsed.plural in r["resources"] and verb in r["verbs"]
            ]
        assert rules, f"{method} {path} is not granted"
    assert seen == {
        ("secrets", "get"),
        ("secrets", "create"),
        ("secrets", "update"),
        ("tokenreviews", "create"),
    }


# -- end to end: a control plane on the double and a node agent's client -----------------------------------


async def test_a_node_agent_gets_a_certificate_for_a_pod_on_its_node_and_not_for_another_node(
    api: ApiServerDouble, tmp_path: Path
) -> None:
    populate_core(api)  # pod shop/reviews-v1-... with service account bookinfo-reviews, on node-b
    api.add_token("agent-b", agent_token("node-b"))
    api.add_token("agent-a", agent_token("node-a"))
    settings = parse_settings(
        [
            f"--source=kube:{api.kubeconfig(tmp_path / 'kubeconfig')}",
            f"--ca-secret={NAMESPACE}/{SECRET}",
            "--xds-listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
            "--debounce-quiet=0.01",
            "--debounce-max=0.05",
            "--shutdown-grace=0.1",
        ]
    )
    reviews = SpiffeId.parse("spiffe://cluster.local/ns/shop/sa/bookinfo-reviews")
    token_file = tmp_path / "token"
    async with ControlPlane(settings).running() as controlplane:
        state = controlplane.state
        assert state is not None
        await until(
            lambda: ("shop", "bookinfo-reviews") in state.service_accounts_on_node("node-b"), "the pod"
        )
        target = f"127.0.0.1:{controlplane.xds_ports[0]}"
        key = generate_key(reviews)
        async with GrpcCertificateClient(target=target, token=TokenFile(token_file), deadline=10) as client:
            token_file.write_text("agent-b\n")
            signed = await client.sign(key.csr_pem(), reviews, "node-b")
            assert signed.spiffe_id == reviews and key.matches(signed.leaf)
            # Signed by the root in the Secret.
            root = x509.load_pem_x509_certificate(stored_secret(api)[CERTIFICATE_KEY])
            chain = pem_certs(signed.chain_pem)
            verify_chain(chain[0], chain[1:], TrustBundle.of(root), signed.not_before + timedelta(minutes=10))

            # node-a's agent can speak neither for node-b nor for a pod that is not on node-a.
            token_file.write_text("agent-a\n")
            with pytest.raises(CertificateDeniedError):
                await client.sign(key.csr_pem(), reviews, "node-b")
            with pytest.raises(CertificateDeniedError):
                await client.sign(key.csr_pem(), reviews, "node-a")
            # An unknown token is denied too.
            token_file.write_text("forged\n")
            with pytest.raises(CertificateDeniedError):
                await client.sign(key.csr_pem(), reviews, "node-b")
    assert api.requests[("POST", REVIEWS)] == 3


# -- the command line ----------------------------------------------------------------------------------


def test_ca_secret_flags_reach_the_settings() -> None:
    settings = parse_settings(["--source=kube", "--ca-secret=mesh/root", "--token-audience=aud"])
    assert settings.ca_secret is not None and str(settings.ca_secret) == "mesh/root"
    assert settings.runs_ca and settings.ca_file is None
    assert settings.token_audience == "aud"
    assert settings.node_service_account == DEFAULT_NODE_SERVICE_ACCOUNT


@pytest.mark.parametrize(
    "argv",
    [
        ["--source=kube", "--ca-secret=mesh/root", "--ca-file=/tmp/ca.pem"],
        ["--source=files:/srv/mesh", "--ca-secret=mesh/root"],
        ["--source=kube", "--ca-secret=root"],
        ["--source=kube", "--ca-secret=mesh/root/x"],
        ["--source=kube", "--ca-secret=mesh/root", "--token-audience="],
    ],
    ids=["with-ca-file", "not-kube", "no-namespace", "extra-slash", "empty-audience"],
)
def test_unusable_ca_secret_flags_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_settings(argv)
    assert exited.value.code == 2
    assert "--ca-secret" in capsys.readouterr().err or "--token-audience" in argv[-1]
