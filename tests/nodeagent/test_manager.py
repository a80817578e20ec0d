"""The identity manager on a fake clock, against a real CA behind a fake of our CertificateClient."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controlplane.ca.authority import generate_root
from controlplane.ca.bundle import RootRotation
from controlplane.ca.identity import SpiffeId
from controlplane.ca.rotation import Backoff
from nodeagent.identity.errors import (
    CertificateDeniedError,
    CertificateRejectedError,
    CertificateUnavailableError,
)
from nodeagent.identity.keys import WorkloadKey
from nodeagent.identity.manager import IdentityCertificate, IdentityManager, ManagerSettings
from tests.ca.builders import START
from tests.nodeagent.fakes import FakeCA, FakeTime, Recorder, until
from tests.running import running

WEB = SpiffeId.parse("spiffe://cluster.local/ns/shop/sa/web")
DB = SpiffeId.parse("spiffe://cluster.local/ns/data/sa/db")
API = SpiffeId.parse("spiffe://cluster.local/ns/shop/sa/api")


class Rig:
    def __init__(self, settings: ManagerSettings | None = None) -> None:
        self.time = FakeTime(START)
        self.ca = FakeCA(self.time)
        self.recorder = Recorder()
        # Every draw 0.5: renewal at exactly half the lifetime, retry delays at 3/4 of the backoff ceiling.
        self.manager = IdentityManager(
            node="node-a",
            client=self.ca,
            clock=self.time,
            sleep=self.time.sleep,
            draw=lambda: 0.5,
            settings=settings,
            listeners=[self.recorder],
        )

    def current(self, spiffe_id: SpiffeId) -> IdentityCertificate:
        material = self.manager.certificate(spiffe_id)
        assert material is not None, f"no certificate for {spiffe_id}"
        return material

    async def issued(self, spiffe_id: SpiffeId) -> IdentityCertificate:
        await until(lambda: self.manager.certificate(spiffe_id) is not None and self.time.sleepers > 0)
        return self.current(spiffe_id)

    async def asleep(self, count: int = 1) -> None:
        """Wait until `count` identity tasks are sleeping (the manager is idle)."""
        await until(lambda: self.time.sleepers == count and self.ca.in_flight == 0)


def half_life(material: IdentityCertificate) -> timedelta:
    cert = material.certificate
    return (cert.not_after - cert.not_before) / 2


async def test_issues_a_certificate_per_wanted_identity_and_tells_the_listener() -> None:
    rig = Rig()
    rig.manager.set_wanted(frozenset({WEB, DB}))
    async with running(rig.manager):
        web, db = await rig.issued(WEB), await rig.issued(DB)
        await rig.asleep(2)
    for spiffe_id, material in ((WEB, web), (DB, db)):
        assert material.spiffe_id == spiffe_id
        assert material.key.matches(material.certificate.leaf)
        assert material.chain_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert {call.node for call in rig.ca.calls} == {"node-a"}
    assert rig.ca.calls_for(WEB) == rig.ca.calls_for(DB) == 1
    assert set(rig.recorder.last.certificates) == {WEB, DB}
    assert rig.recorder.last.trust_bundle_pem == rig.ca.authority.trust_bundle.pem()
    # The manager stops cleanly: the leak fixture fails the test if an identity task outlived run().


async def test_renews_at_half_lifetime_with_a_fresh_key() -> None:
    rig = Rig()
    rig.manager.set_wanted(frozenset({WEB}))
    async with running(rig.manager):
        first = await rig.issued(WEB)
        renew_at = first.certificate.not_before + half_life(first)
        rig.time.advance_to(renew_at - timedelta(seconds=1))
        await until(lambda: rig.time.next_wake == renew_at)
        assert rig.ca.calls_for(WEB) == 1
        rig.time.advance(timedelta(seconds=1))
        await until(lambda: rig.ca.calls_for(WEB) == 2)
        await rig.asleep()
        second = rig.current(WEB)
    assert second.serial != first.serial
    assert second.key.public_key_der() != first.key.public_key_der()
    assert second.certificate.not_before > first.certificate.not_before
    assert [set(s.certificates) for s in rig.recorder.states] == [{WEB}, {WEB}]
    assert rig.recorder.last.certificates[WEB] is second


async def test_failed_renewals_back_off_while_the_old_certificate_is_served() -> None:
    rig = Rig()
    rig.manager.set_wanted(frozenset({WEB}))
    async with running(rig.manager):
        first = await rig.issued(WEB)
        rig.ca.down = CertificateUnavailableError("CA unreachable")
        rig.time.advance_to(first.certificate.not_before + half_life(first))
        # Equal jitter at draw 0.5: 3/4 of 1 s, 2 s, 4 s, ...
        for attempt, expected in enumerate((0.75, 1.5, 3.0, 6.0), start=2):
            await until(lambda n=attempt: rig.ca.calls_for(WEB) == n)  # type: ignore[misc]
            await rig.asleep()
            assert rig.time.next_wake == rig.time.now() + timedelta(seconds=expected)
            assert rig.current(WEB) is first
            rig.time.advance(timedelta(seconds=expected))
        rig.ca.down = None
        await until(lambda: rig.ca.calls_for(WEB) == 6)
        await rig.asleep()
        renewed = rig.current(WEB)
    assert renewed.serial != first.serial
    # The listener never saw WEB without a certificate.
    assert all(WEB in state.certificates for state in rig.recorder.states)


async def test_a_denial_is_retried_slowly() -> None:
    rig = Rig()
    rig.ca.fail_next(CertificateDeniedError("denied"))
    rig.manager.set_wanted(frozenset({WEB}))
    async with running(rig.manager):
        await until(lambda: rig.ca.calls_for(WEB) == 1)
        await rig.asleep()
        # 3/4 of the slow backoff's first step (1 min), not of the fast one (1 s).
        assert rig.time.next_wake == START + timedelta(seconds=45)
        assert rig.manager.certificate(WEB) is None
        rig.time.advance(timedelta(seconds=45))
        await rig.issued(WEB)
    assert rig.ca.calls_for(WEB) == 2


async def test_a_certificate_for_another_key_is_rejected_and_retried_slowly() -> None:
    rig = Rig()
    rig.ca.swap_key = True
    rig.manager.set_wanted(frozenset({WEB}))
    async with running(rig.manager):
        await until(lambda: rig.ca.calls_for(WEB) == 1)
        await rig.asleep()
        assert rig.manager.certificate(WEB) is None
        assert rig.recorder.states == []
        assert rig.time.next_wake == START + timedelta(seconds=45)
        rig.ca.swap_key = False
        rig.time.advance(timedelta(seconds=45))
        material = await rig.issued(WEB)
    assert material.key.matches(material.certificate.leaf)


async def test_a_certificate_not_renewed_in_time_is_withdrawn_at_expiry_and_comes_back() -> None:
    # Sleeps in one piece, so each wake-up is a retry.
    settings = ManagerSettings(
        retry=Backoff(initial=timedelta(minutes=10), maximum=timedelta(hours=4)), max_sleep=timedelta(days=1)
    )
    rig = Rig(settings)
    rig.manager.set_wanted(frozenset({WEB}))
    async with running(rig.manager):
        first = await rig.issued(WEB)
        rig.ca.down = CertificateUnavailableError("CA unreachable")
        rig.time.advance_to(first.certificate.not_before + half_life(first))
        await until(lambda: rig.ca.calls_for(WEB) == 2)
        await rig.asleep()
        wakes = []
        while rig.manager.certificate(WEB) is not None:
            wake = rig.time.next_wake
            assert wake is not None
            assert wake <= first.not_after
            wakes.append(wake)
            rig.time.advance_to(wake)
            await until(lambda: rig.ca.calls_for(WEB) == len(wakes) + 2)
            await rig.asleep()
            assert len(wakes) < 20
        # The last retry before expiry was brought forward to the expiry itself.
        assert wakes[-1] == first.not_after
        assert rig.recorder.last.certificates == {}
        # Expired: plain backoff from here on, no longer capped.
        assert rig.time.next_wake is not None and rig.time.next_wake > rig.time.now()
        rig.ca.down = None
        rig.time.advance_to(rig.time.next_wake)
        again = await rig.issued(WEB)
    assert again.serial != first.serial
    assert set(rig.recorder.last.certificates) == {WEB}


async def test_an_identity_whose_last_pod_left_is_dropped_with_its_key() -> None:
    rig = Rig()
    rig.manager.set_wanted(frozenset({WEB, DB}))
    async with running(rig.manager):
        first_web = await rig.issued(WEB)
        await rig.issued(DB)
        rig.manager.set_wanted(frozenset({DB}))
        await until(lambda: set(rig.recorder.last.certificates) == {DB})
        assert rig.manager.certificate(WEB) is None
        await rig.asleep(1)
        # Long past WEB's renewal time: nothing asks for WEB any more.
        rig.time.advance(timedelta(hours=13))
        await until(lambda: rig.ca.calls_for(DB) == 2)
        await rig.asleep(1)
        assert rig.ca.calls_for(WEB) == 1
        # WEB's pod comes back: a new key, a new certificate.
        rig.manager.set_wanted(frozenset({DB, WEB}))
        second_web = await rig.issued(WEB)
    assert second_web.key.public_key_der() != first_web.key.public_key_der()


async def test_dropping_an_identity_while_its_request_is_in_flight_installs_nothing() -> None:
    rig = Rig()
    rig.ca.gate.clear()
    rig.manager.set_wanted(frozenset({WEB}))
    async with running(rig.manager):
        await until(lambda: rig.ca.in_flight == 1)
        rig.manager.set_wanted(frozenset())
        await until(lambda: rig.ca.in_flight == 0)
        rig.ca.gate.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert rig.manager.certificate(WEB) is None
    assert rig.recorder.states == []


async def test_requests_in_flight_are_bounded() -> None:
    rig = Rig(ManagerSettings(max_concurrent_requests=2))
    rig.ca.gate.clear()
    rig.manager.set_wanted(frozenset({WEB, DB, API}))
    async with running(rig.manager):
        await until(lambda: rig.ca.in_flight == 2)
        for _ in range(20):
            await asyncio.sleep(0)
        assert rig.ca.in_flight == 2
        rig.ca.gate.set()
        await rig.asleep(3)
    assert set(rig.manager.state().certificates) == {WEB, DB, API}


async def test_a_rotated_root_reaches_the_trust_bundle_with_the_next_certificate() -> None:
    rig = Rig()
    rig.manager.set_wanted(frozenset({WEB}))
    async with running(rig.manager):
        first = await rig.issued(WEB)
        assert len(rig.manager.state().trust_bundle_pem) == 1
        new_root = generate_root("cluster.local", rig.time)
        RootRotation(rig.ca.authority, new_root, clock=rig.time).trust_new_root()
        rig.time.advance_to(first.certificate.not_before + half_life(first))
        await until(lambda: rig.ca.calls_for(WEB) == 2)
        await rig.asleep()
    assert rig.manager.state().trust_bundle_pem == rig.ca.authority.trust_bundle.pem()
    assert len(rig.recorder.last.trust_bundle_pem) == 2


async def test_key_material_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rig = Rig()
    rig.ca.fail_next(CertificateUnavailableError("CA unreachable"), CertificateRejectedError("bad"))
    rig.manager.set_wanted(frozenset({WEB}))
    async with running(rig.manager):
        await until(lambda: rig.ca.calls_for(WEB) == 1)
        await rig.asleep()
        rig.time.advance(timedelta(seconds=1))
        await until(lambda: rig.ca.calls_for(WEB) == 2)
        await rig.asleep()
        # The rejection's slow retry: 3/4 of 2 min.
        rig.time.advance(timedelta(seconds=90))
        material = await rig.issued(WEB)
        rig.manager.set_wanted(frozenset())
        await until(lambda: rig.manager.certificate(WEB) is None)
    assert caplog.records, "the lifecycle above logs"
    # The PEM's last base64 line encodes only the public key, which certificates carry too (a chance
    # alignment made it match a certificate's base64 now and then): look for the lines holding the private
    # scalar, and for the scalar itself in hex.
    key_lines = material.key.private_key_pem().decode().splitlines()[1:-2]
    key_lines.append(f"{_private_scalar(material.key):064x}")
    texts = [record.getMessage() + repr(record.__dict__) for record in caplog.records]
    texts += [repr(material), repr(rig.recorder.last), repr(rig.recorder.states)]
    for text in texts:
        assert "PRIVATE KEY" not in text
        assert not any(line in text for line in key_lines)


def _private_scalar(key: WorkloadKey) -> int:
    pem = key.private_key_pem()
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded.private_numbers().private_value
