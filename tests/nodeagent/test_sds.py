"""The local SDS server over its unix socket, to scripted SecretDiscoveryService clients."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import grpc
import pytest
import pytest_asyncio
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from controlplane.ca.identity import SpiffeId
from controlplane.ca.sdsnames import TRUST_BUNDLE_SECRET
from controlplane.xds import typeurls
from nodeagent.identity.keys import generate_key
from nodeagent.identity.manager import IdentityCertificate, IdentityManager, IdentityState
from nodeagent.sds import SdsError, SdsServer, build_secrets, prepare_socket_directory
from tests.ca.builders import START
from tests.nodeagent.fakes import FakeCA, FakeTime, until

WEB = SpiffeId.parse("spiffe://cluster.local/ns/shop/sa/web")
DB = SpiffeId.parse("spiffe://cluster.local/ns/data/sa/db")
TIMEOUT = 5.0
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]


async def issue(ca: FakeCA, spiffe_id: SpiffeId) -> IdentityCertificate:
    key = generate_key(spiffe_id)
    return IdentityCertificate(key=key, certificate=await ca.sign(key.csr_pem(), spiffe_id, "node-a"))


def state_of(*materials: IdentityCertificate) -> IdentityState:
    return IdentityState(
        certificates=MappingProxyType({m.spiffe_id: m for m in materials}),
        trust_bundle_pem=materials[0].certificate.trust_bundle_pem if materials else (),
    )


def unpack(any_message: Any) -> secret_pb2.Secret:
    secret = secret_pb2.Secret()
    assert any_message.Unpack(secret)
    return secret


class SdsStream:
    """One StreamSecrets (SotW) or DeltaSecrets stream, as Envoy opens it."""

    def __init__(self, channel: grpc.aio.Channel, *, delta: bool = False) -> None:
        stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
        self.call: Any = stub.DeltaSecrets() if delta else stub.StreamSecrets()
        self._node = base_pb2.Node(id="envoy-on-node-a", cluster="nodemesh")

    async def request(self, names: list[str], *, version: str = "", nonce: str = "") -> None:
        await self.call.write(
            discovery_pb2.DiscoveryRequest(
                node=self._node,
                type_url=typeurls.SECRET,
                resource_names=names,
                version_info=version,
                response_nonce=nonce,
            )
        )

    async def subscribe(self, names: list[str], *, nonce: str = "") -> None:
        await self.call.write(
            discovery_pb2.DeltaDiscoveryRequest(
                node=self._node,
                type_url=typeurls.SECRET,
                resource_names_subscribe=names,
                response_nonce=nonce,
            )
        )

    async def recv(self) -> Any:
        message = await asyncio.wait_for(self.call.read(), TIMEOUT)
        assert message is not _EOF, "stream ended"
        return message

    async def close(self) -> None:
        await self.call.done_writing()
        async with asyncio.timeout(TIMEOUT):
            while await self.call.read() is not _EOF:
                pass
        await self.call.code()


@pytest_asyncio.fixture
async def sds(tmp_path: Path) -> AsyncIterator[SdsServer]:
    async with SdsServer(tmp_path / "sds" / "agent.sock") as server:
        yield server


@pytest_asyncio.fixture
async def channel(sds: SdsServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"unix:{sds.socket_path}") as channel:
        yield channel


def test_secrets_are_one_certificate_per_identity_by_spiffe_id_and_the_bundle() -> None:
    time = FakeTime(START)
    ca = FakeCA(time)
    web, db = asyncio.run(issue(ca, WEB)), asyncio.run(issue(ca, DB))
    secrets = build_secrets(state_of(web, db))
    assert [s.name for s in secrets] == [str(DB), str(WEB), TRUST_BUNDLE_SECRET]
    by_name = {s.name: s for s in secrets}
    tls = by_name[str(WEB)].tls_certificate
    assert tls.certificate_chain.inline_bytes.decode() == web.chain_pem
    assert tls.private_key.inline_bytes == web.key.private_key_pem()
    bundle = by_name[TRUST_BUNDLE_SECRET].validation_context.trusted_ca.inline_bytes.decode()
    assert bundle == "".join(ca.authority.trust_bundle.pem())
    # No bundle known yet: no ROOTCA secret rather than an empty one.
    assert build_secrets(IdentityState()) == []


async def test_the_socket_is_private_in_a_private_directory(sds: SdsServer) -> None:
    assert stat.S_IMODE(sds.socket_path.parent.stat().st_mode) == 0o700
    info = sds.socket_path.stat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600


async def test_the_socket_is_removed_on_exit(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    async with SdsServer(path):
        assert path.exists()
    assert not path.exists()


def test_an_existing_directory_loses_group_and_world_write(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, 0o777)
    prepare_socket_directory(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755


def test_a_file_in_place_of_the_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SdsError, match="not a directory"):
        prepare_socket_directory(tmp_path / "file")


def test_a_socket_path_too_long_for_sun_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SdsError, match="longer than"):
        SdsServer(tmp_path / ("x" * 120) / "agent.sock")


async def test_sotw_serves_the_named_secret_and_pushes_its_renewal(
    sds: SdsServer, channel: grpc.aio.Channel
) -> None:
    ca = FakeCA(FakeTime(START))
    web, db = await issue(ca, WEB), await issue(ca, DB)
    sds.identities_changed(state_of(web, db))
    stream = SdsStream(channel)
    await stream.request([str(WEB)])
    response = await stream.recv()
    assert response.type_url == typeurls.SECRET
    assert [unpack(r).name for r in response.resources] == [str(WEB)]
    served = unpack(response.resources[0]).tls_certificate
    assert served.certificate_chain.inline_bytes.decode() == web.chain_pem
    assert served.private_key.inline_bytes == web.key.private_key_pem()
    await stream.request([str(WEB)], version=response.version_info, nonce=response.nonce)

    # DB renews: nothing for this stream. WEB renews: pushed on the open stream.
    sds.identities_changed(state_of(web, await issue(ca, DB)))
    renewed = await issue(ca, WEB)
    sds.identities_changed(state_of(renewed, db))
    pushed = await stream.recv()
    assert pushed.version_info != response.version_info
    pushed_tls = unpack(pushed.resources[0]).tls_certificate
    assert pushed_tls.certificate_chain.inline_bytes.decode() == renewed.chain_pem
    assert pushed_tls.private_key.inline_bytes == renewed.key.private_key_pem()
    await stream.close()


async def test_sotw_serves_the_trust_bundle_as_rootca(sds: SdsServer, channel: grpc.aio.Channel) -> None:
    ca = FakeCA(FakeTime(START))
    sds.identities_changed(state_of(await issue(ca, WEB)))
    stream = SdsStream(channel)
    await stream.request([TRUST_BUNDLE_SECRET])
    response = await stream.recv()
    (secret,) = [unpack(r) for r in response.resources]
    assert secret.name == TRUST_BUNDLE_SECRET
    trusted = secret.validation_context.trusted_ca.inline_bytes.decode()
    assert trusted == "".join(ca.authority.trust_bundle.pem())
    await stream.close()


async def test_delta_serves_and_removes_a_dropped_identity(sds: SdsServer, channel: grpc.aio.Channel) -> None:
    ca = FakeCA(FakeTime(START))
    web, db = await issue(ca, WEB), await issue(ca, DB)
    sds.identities_changed(state_of(web, db))
    stream = SdsStream(channel, delta=True)
    await stream.subscribe([str(WEB), TRUST_BUNDLE_SECRET])
    response = await stream.recv()
    assert sorted(r.name for r in response.resources) == sorted([str(WEB), TRUST_BUNDLE_SECRET])
    await stream.subscribe([], nonce=response.nonce)
    sds.identities_changed(state_of(db))
    removal = await stream.recv()
    assert list(removal.removed_resources) == [str(WEB)]
    await stream.close()


async def test_the_manager_feeds_the_sds_server(sds: SdsServer, channel: grpc.aio.Channel) -> None:
    time = FakeTime(START)
    manager = IdentityManager(
        node="node-a", client=FakeCA(time), clock=time, sleep=time.sleep, listeners=[sds]
    )
    manager.set_wanted(frozenset({WEB}))
    task = asyncio.create_task(manager.run())
    try:
        await until(lambda: manager.certificate(WEB) is not None)
        stream = SdsStream(channel)
        await stream.request([str(WEB)])
        response = await stream.recv()
        material = manager.certificate(WEB)
        assert material is not None
        served = unpack(response.resources[0]).tls_certificate
        assert served.certificate_chain.inline_bytes.decode() == material.chain_pem
        await stream.close()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
