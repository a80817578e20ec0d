"""The identity manager's metrics, scraped from a Prometheus registry, on the fake clock and the fake CA."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry

from nodeagent.identity.errors import (
    CertificateDeniedError,
    CertificateRejectedError,
    CertificateUnavailableError,
)
from nodeagent.identity.manager import IssuanceResult, RequestFailure
from nodeagent.metrics import IdentityCollector
from tests.ca.builders import START
from tests.nodeagent.fakes import until
from tests.nodeagent.test_manager import DB, WEB, Rig, half_life
from tests.running import running


class Scrape:
    def __init__(self, rig: Rig) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(IdentityCollector(rig.manager))

    def __call__(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def requests(self) -> dict[str, float | None]:
        return {
            r.value: self("nodemesh_agent_certificate_requests_total", result=r.value) for r in IssuanceResult
        }


def test_the_result_label_is_closed_and_every_failure_maps_onto_it() -> None:
    assert [r.value for r in IssuanceResult] == ["ok", "denied", "error"]
    assert IssuanceResult.of(RequestFailure.DENIED) is IssuanceResult.DENIED
    assert IssuanceResult.of(RequestFailure.UNAVAILABLE) is IssuanceResult.ERROR
    assert IssuanceResult.of(RequestFailure.REJECTED) is IssuanceResult.ERROR


async def test_before_any_certificate_every_result_reads_zero_and_no_expiry_is_reported() -> None:
    scrape = Scrape(Rig())
    assert scrape("nodemesh_agent_certificates") == 0
    assert scrape.requests() == {"ok": 0, "denied": 0, "error": 0}
    assert scrape("nodemesh_agent_certificate_renewals_total") == 0
    assert scrape("nodemesh_agent_certificate_earliest_expiry_seconds") is None


async def test_issued_and_renewed_certificates_and_the_time_to_the_first_expiry() -> None:
    rig = Rig()
    scrape = Scrape(rig)
    rig.manager.set_wanted(frozenset({WEB, DB}))
    async with running(rig.manager):
        web, db = await rig.issued(WEB), await rig.issued(DB)
        await rig.asleep(2)
        assert scrape("nodemesh_agent_certificates") == 2
        assert scrape.requests() == {"ok": 2, "denied": 0, "error": 0}
        assert scrape("nodemesh_agent_certificate_renewals_total") == 0
        first_expiry = min(web.not_after, db.not_after)
        assert scrape("nodemesh_agent_certificate_earliest_expiry_seconds") == (
            (first_expiry - START).total_seconds()
        )

        # The clock moves: the time left shrinks with it; at half lifetime both are renewed.
        rig.time.advance(timedelta(hours=1))
        assert scrape("nodemesh_agent_certificate_earliest_expiry_seconds") == (
            (first_expiry - START - timedelta(hours=1)).total_seconds()
        )
        rig.time.advance_to(
            max(web.certificate.not_before + half_life(web), db.certificate.not_before + half_life(db))
        )
        await until(lambda: rig.ca.calls_for(WEB) == 2 and rig.ca.calls_for(DB) == 2)
        await rig.asleep(2)
        renewed = min(rig.current(WEB).not_after, rig.current(DB).not_after)

        assert scrape("nodemesh_agent_certificates") == 2
        assert scrape.requests() == {"ok": 4, "denied": 0, "error": 0}
        assert scrape("nodemesh_agent_certificate_renewals_total") == 2
        assert scrape("nodemesh_agent_certificate_earliest_expiry_seconds") == (
            (renewed - rig.time.now()).total_seconds()
        )


async def test_failed_requests_are_counted_by_result() -> None:
    rig = Rig()
    scrape = Scrape(rig)
    rig.ca.fail_next(
        CertificateDeniedError("not on this node"),
        CertificateUnavailableError("CA unreachable"),
        CertificateRejectedError("bad answer"),
    )
    rig.manager.set_wanted(frozenset({WEB}))
    async with running(rig.manager):
        for calls in (1, 2, 3):
            await until(lambda n=calls: rig.ca.calls_for(WEB) == n)  # type: ignore[misc]
            await rig.asleep()
            assert scrape("nodemesh_agent_certificates") == 0
            wake = rig.time.next_wake
            assert wake is not None
            rig.time.advance_to(wake)
        await rig.issued(WEB)
        assert scrape.requests() == {"ok": 1, "denied": 1, "error": 2}
        assert scrape("nodemesh_agent_certificates") == 1
        # A first certificate after failures is no renewal.
        assert scrape("nodemesh_agent_certificate_renewals_total") == 0


async def test_a_dropped_identity_is_no_longer_held() -> None:
    rig = Rig()
    scrape = Scrape(rig)
    rig.manager.set_wanted(frozenset({WEB, DB}))
    async with running(rig.manager):
        await rig.issued(WEB)
        await rig.issued(DB)
        await rig.asleep(2)
        rig.manager.set_wanted(frozenset({DB}))
        await rig.asleep(1)
        assert scrape("nodemesh_agent_certificates") == 1
        assert scrape("nodemesh_agent_certificate_earliest_expiry_seconds") == (
            (rig.current(DB).not_after - rig.time.now()).total_seconds()
        )
        rig.manager.set_wanted(frozenset())
        await rig.asleep(0)
        assert scrape("nodemesh_agent_certificates") == 0
        assert scrape("nodemesh_agent_certificate_earliest_expiry_seconds") is None
