from __future__ import annotations

import itertools
import ssl
from datetime import timedelta
from pathlib import Path

import pytest

from controlplane.ca.authority import CertificateAuthority, Issuer, generate_root
from controlplane.ca.bundle import RootRotation, RotationPhase, TrustBundle, verify_chain
from controlplane.ca.errors import ChainVerificationError, InvalidCAMaterialError, RotationError
from controlplane.ca.identity import SpiffeId
from controlplane.ca.rotation import renewal_time
from tests.ca.builders import FakeClock, TlsPeer, csr_pem, make_intermediate, pem_certs, tls_handshake

TD = "cluster.local"
TTL = timedelta(hours=24)


def test_bundle_add_remove_and_pem_order() -> None:
    clock = FakeClock()
    a, b, c = (generate_root(TD, clock).certificate for _ in range(3))
    bundle = TrustBundle.of(a)
    grown = bundle.with_root(b).with_root(c)
    assert grown.roots == (a, b, c)
    assert grown.with_root(b) is grown
    assert grown.without_root(b).roots == (a, c)
    assert TrustBundle.from_pem(grown.pem()) == grown
    assert TrustBundle.from_pem("".join(grown.pem())) == grown
    assert b in grown and b not in bundle


def test_bundle_refusals() -> None:
    clock = FakeClock()
    root = generate_root(TD, clock)
    other = generate_root(TD, clock).certificate
    intermediate = make_intermediate(root, clock).certificate
    with pytest.raises(InvalidCAMaterialError, match="at least one root"):
        TrustBundle(roots=())
    with pytest.raises(InvalidCAMaterialError, match="same root twice"):
        TrustBundle.of(root.certificate, root.certificate)
    with pytest.raises(InvalidCAMaterialError, match="not self-signed"):
        TrustBundle.of(intermediate)
    with pytest.raises(InvalidCAMaterialError, match="last root"):
        TrustBundle.of(other).without_root(other)
    with pytest.raises(InvalidCAMaterialError, match="not in the trust bundle"):
        TrustBundle.of(other).without_root(root.certificate)
    with pytest.raises(InvalidCAMaterialError, match="not PEM"):
        TrustBundle.from_pem("junk")


def test_rotation_steps_must_run_in_order() -> None:
    clock = FakeClock()
    ca = CertificateAuthority(generate_root(TD, clock), clock=clock, default_ttl=TTL, max_ttl=TTL)
    rotation = RootRotation(ca, generate_root(TD, clock), clock=clock)
    with pytest.raises(RotationError, match="needs rotation phase trusting_both"):
        rotation.switch_signing(force=True)
    with pytest.raises(RotationError, match="needs rotation phase signing_with_new"):
        rotation.retire_old_root(force=True)
    rotation.trust_new_root()
    with pytest.raises(RotationError, match="needs rotation phase pending"):
        rotation.trust_new_root()
    with pytest.raises(RotationError, match="too early"):
        rotation.switch_signing()
    with pytest.raises(RotationError, match="already in use"):
        RootRotation(ca, ca.issuer, clock=clock)


# -- the rotation walk-through ------------------------------------------------------------------------------

IDENTITIES = {
    "web": SpiffeId.for_workload(TD, "shop", "web"),
    "api": SpiffeId.for_workload(TD, "shop", "api"),
    "db": SpiffeId.for_workload(TD, "data", "db"),
}


class Mesh:
    """Workloads holding what their node agent last fetched, renewing at half life on a fake clock."""

    def __init__(self, ca: CertificateAuthority, clock: FakeClock, tmp_path: Path) -> None:
        self.ca, self.clock, self.tmp_path = ca, clock, tmp_path
        self.peers = {name: TlsPeer(name) for name in IDENTITIES}
        self.renew_at = {name: clock.now() for name in IDENTITIES}

    def renew(self, name: str) -> None:
        peer = self.peers[name]
        peer.issued = self.ca.sign(csr_pem(peer.key), IDENTITIES[name])
        # Fixed draws per peer, so renewals are staggered like real agents'.
        jitter = {"web": 0.0, "api": 0.5, "db": 1.0}[name]
        self.renew_at[name] = renewal_time(peer.issued.not_before, peer.issued.not_after, jitter)

    def tick(self, delta: timedelta) -> None:
        """Advance time; every peer due renews, checking at every instant that all pairs still verify."""
        self.clock.advance(delta)
        for name, due in self.renew_at.items():
            if due <= self.clock.now():
                self.renew(name)
        self.assert_all_pairs_verify()

    def assert_all_pairs_verify(self) -> None:
        for client, server in itertools.permutations(self.peers.values(), 2):
            for a, b in ((client, server), (server, client)):
                issued = a.current
                verify_chain(
                    issued.certificate,
                    pem_certs(issued.chain_pem),
                    TrustBundle.from_pem(b.current.trust_bundle_pem),
                    self.clock.now(),
                )

    def assert_all_pairs_handshake(self) -> None:
        for client, server in itertools.permutations(self.peers.values(), 2):
            seen_by_server, seen_by_client = tls_handshake(
                client.context(self.tmp_path, server_side=False),
                server.context(self.tmp_path, server_side=True),
            )
            assert seen_by_server == str(IDENTITIES[client.name])
            assert seen_by_client == str(IDENTITIES[server.name])

    def roots_in_use(self) -> set[str]:
        return {p.current.certificate.issuer.rfc4514_string() for p in self.peers.values()}


def _phase(rotation: RootRotation) -> RotationPhase:
    # A call, so mypy does not carry the narrowed phase across the steps that change it.
    return rotation.phase


def _walk_until(mesh: Mesh, rotation: RootRotation) -> None:
    """Tick in hours until the next rotation step is allowed; every tick checks every pair."""
    safe_at = rotation.next_step_after
    assert safe_at is not None
    while mesh.clock.now() < safe_at:
        mesh.tick(timedelta(hours=1))


@pytest.mark.parametrize("new_issuer_kind", ["root", "intermediate"])
def test_root_rotation_never_breaks_a_handshake(tmp_path: Path, new_issuer_kind: str) -> None:
    clock = FakeClock()
    old = generate_root(TD, clock)
    new_root = generate_root(TD, clock)
    new_issuer: Issuer = new_root if new_issuer_kind == "root" else make_intermediate(new_root, clock)
    ca = CertificateAuthority(old, clock=clock, default_ttl=TTL, max_ttl=TTL)
    mesh = Mesh(ca, clock, tmp_path)
    # The mesh runs for a while first, so certificates are of all ages when the rotation starts.
    for name in IDENTITIES:
        mesh.renew(name)
        clock.advance(timedelta(hours=5))
    mesh.tick(timedelta(hours=1))
    mesh.assert_all_pairs_handshake()
    old_name = old.certificate.subject.rfc4514_string()
    assert mesh.roots_in_use() == {old_name}

    rotation = RootRotation(ca, new_issuer, clock=clock)
    assert rotation.trust_new_root().roots == (old.certificate, new_root.certificate)
    assert _phase(rotation) is RotationPhase.TRUSTING_BOTH
    mesh.tick(timedelta(hours=1))
    mesh.assert_all_pairs_handshake()
    _walk_until(mesh, rotation)
    assert all(len(p.current.trust_bundle_pem) == 2 for p in mesh.peers.values())
    mesh.assert_all_pairs_handshake()

    rotation.switch_signing()
    assert _phase(rotation) is RotationPhase.SIGNING_WITH_NEW
    # Renew one peer right away: new and old leaves now coexist.
    mesh.renew("web")
    assert len(mesh.roots_in_use()) == 2
    mesh.assert_all_pairs_verify()
    mesh.assert_all_pairs_handshake()
    with pytest.raises(RotationError, match="too early"):
        rotation.retire_old_root()
    _walk_until(mesh, rotation)
    assert mesh.roots_in_use() == {new_issuer.certificate.subject.rfc4514_string()}
    mesh.assert_all_pairs_handshake()

    assert rotation.retire_old_root().roots == (new_root.certificate,)
    assert _phase(rotation) is RotationPhase.DONE
    mesh.renew("api")
    mesh.assert_all_pairs_verify()
    mesh.assert_all_pairs_handshake()
    for _ in range(30):
        mesh.tick(timedelta(hours=1))
    assert all(len(p.current.trust_bundle_pem) == 1 for p in mesh.peers.values())
    mesh.assert_all_pairs_handshake()


def test_switching_before_peers_have_the_new_root_breaks_handshakes(tmp_path: Path) -> None:
    """Why step 2 waits: a peer that has not fetched the two-root bundle rejects new leaves."""
    clock = FakeClock()
    ca = CertificateAuthority(generate_root(TD, clock), clock=clock, default_ttl=TTL, max_ttl=TTL)
    mesh = Mesh(ca, clock, tmp_path)
    for name in IDENTITIES:
        mesh.renew(name)
    rotation = RootRotation(ca, generate_root(TD, clock), clock=clock)
    rotation.trust_new_root()
    rotation.switch_signing(force=True)
    mesh.renew("web")
    with pytest.raises(ChainVerificationError):
        mesh.assert_all_pairs_verify()
    web, api = mesh.peers["web"], mesh.peers["api"]
    with pytest.raises(ssl.SSLError):
        tls_handshake(web.context(tmp_path, server_side=False), api.context(tmp_path, server_side=True))


def test_retiring_the_old_root_early_breaks_handshakes(tmp_path: Path) -> None:
    """Why step 3 waits: leaves still signed by the old root fail against the one-root bundle."""
    clock = FakeClock()
    ca = CertificateAuthority(generate_root(TD, clock), clock=clock, default_ttl=TTL, max_ttl=TTL)
    mesh = Mesh(ca, clock, tmp_path)
    for name in IDENTITIES:
        mesh.renew(name)
    rotation = RootRotation(ca, generate_root(TD, clock), clock=clock)
    rotation.trust_new_root()
    _walk_until(mesh, rotation)
    rotation.switch_signing()
    rotation.retire_old_root(force=True)
    mesh.renew("web")
    with pytest.raises(ChainVerificationError):
        mesh.assert_all_pairs_verify()
    web, db = mesh.peers["web"], mesh.peers["db"]
    with pytest.raises(ssl.SSLError):
        tls_handshake(db.context(tmp_path, server_side=False), web.context(tmp_path, server_side=True))
