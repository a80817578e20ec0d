"""Fakes of the identity manager's seams: time (clock + sleep) and the CA client (over a real CA)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from controlplane.ca.authority import CertificateAuthority, generate_root
from controlplane.ca.identity import SpiffeId
from nodeagent.identity.client import CertificateClient, SignedCertificate
from nodeagent.identity.errors import CertificateRequestError
from nodeagent.identity.keys import generate_key
from nodeagent.identity.manager import IdentityListener, IdentityState


class FakeTime:
    """A clock that moves only when told, and a `sleep` that waits for it."""

    def __init__(self, start: datetime) -> None:
        self.current = start
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        entry = (self.current + timedelta(seconds=seconds), asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    @property
    def sleepers(self) -> int:
        return len(self._sleepers)

    @property
    def next_wake(self) -> datetime | None:
        """The earliest instant a sleeper waits for."""
        return min((deadline for deadline, _ in self._sleepers), default=None)

    def advance_to(self, instant: datetime) -> None:
        self.advance(instant - self.current)

    def advance(self, delta: timedelta) -> None:
        self.current += delta
        # Woken sleepers leave the list at once, so `sleepers` counts only those still waiting.
        for entry in [e for e in self._sleepers if e[0] <= self.current]:
            self._sleepers.remove(entry)
            entry[1].set_result(None)


async def until(condition: Callable[[], bool], *, turns: int = 500) -> None:
    """Let the event loop run until `condition()` holds (by loop turns, not by wall-clock time)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignCall:
    csr_pem: str
    spiffe_id: SpiffeId
    node: str


class FakeCA(CertificateClient):
    """A CertificateClient over a real CertificateAuthority; `fail_next` scripts failures."""

    def __init__(self, clock: FakeTime, *, ttl: timedelta | None = None) -> None:
        self.authority = CertificateAuthority(generate_root("cluster.local", clock), clock=clock)
        self.calls: list[SignCall] = []
        self.failures: deque[CertificateRequestError] = deque()
        # While set, every request fails with this error.
        self.down: CertificateRequestError | None = None
        self._ttl = ttl
        # While cleared, requests wait: they are "in flight".
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0
        # Certify a key other than the CSR's (a broken or malicious CA).
        self.swap_key = False

    def fail_next(self, *errors: CertificateRequestError) -> None:
        self.failures.extend(errors)

    async def sign(self, csr_pem: str, spiffe_id: SpiffeId, node: str) -> SignedCertificate:
        self.calls.append(SignCall(csr_pem=csr_pem, spiffe_id=spiffe_id, node=node))
        self.in_flight += 1
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        if self.failures:
            raise self.failures.popleft()
        if self.down is not None:
            raise self.down
        if self.swap_key:
            csr_pem = generate_key(spiffe_id).csr_pem()
        issued = self.authority.sign(csr_pem, spiffe_id, self._ttl)
        return SignedCertificate(
            spiffe_id=spiffe_id,
            chain_pem=(issued.certificate_pem, *issued.chain_pem),
            trust_bundle_pem=issued.trust_bundle_pem,
            leaf=x509.load_pem_x509_certificate(issued.certificate_pem.encode()),
        )

    def calls_for(self, spiffe_id: SpiffeId) -> int:
        return sum(1 for call in self.calls if call.spiffe_id == spiffe_id)


class Recorder(IdentityListener):
    def __init__(self) -> None:
        self.states: list[IdentityState] = []

    def identities_changed(self, state: IdentityState) -> None:
        self.states.append(state)

    @property
    def last(self) -> IdentityState:
        return self.states[-1]
