"""Keep one current certificate for every identity that has a pod on this node.

For each wanted identity a task generates a key, asks the CA for a certificate, installs it, sleeps until
its renewal time (half its lifetime, jittered) and starts over with a fresh key. A failed request is retried
with jittered exponential backoff (slower when the CA denied us) while the previous certificate stays in
service until it expires. An identity whose last pod left is dropped at once: its task is cancelled and its
key forgotten. Listeners (the SDS server) hear of every change; `metrics()` counts what happened (for
nodeagent.metrics.IdentityCollector).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from controlplane.ca.clock import Clock
from controlplane.ca.identity import SpiffeId
from controlplane.ca.rotation import Backoff, renewal_time, retry_delay
from nodeagent.identity.client import CertificateClient, SignedCertificate
from nodeagent.identity.errors import (
    CertificateDeniedError,
    CertificateRejectedError,
    CertificateRequestError,
)
from nodeagent.identity.keys import WorkloadKey, generate_key

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityCertificate:
    """The TLS material of one identity: its key (kept here) and the certificate the CA issued for it."""

    key: WorkloadKey
    certificate: SignedCertificate

    @property
    def spiffe_id(self) -> SpiffeId:
        return self.certificate.spiffe_id

    @property
    def chain_pem(self) -> str:
        return "".join(self.certificate.chain_pem)

    @property
    def serial(self) -> int:
        return self.certificate.serial

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_after


_NO_CERTIFICATES: Mapping[SpiffeId, IdentityCertificate] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityState:
    """Everything the node's Envoy needs for mTLS at one moment: a certificate per identity, and the roots."""

    certificates: Mapping[SpiffeId, IdentityCertificate] = field(default_factory=lambda: _NO_CERTIFICATES)
    # Empty until the first certificate arrives: the bundle comes with every CA response.
    trust_bundle_pem: tuple[str, ...] = ()


class IdentityListener(Protocol):
    def identities_changed(self, state: IdentityState) -> None:
        """Called synchronously after every change; must not block."""
        ...


class RequestFailure(StrEnum):
    """How a certificate request failed; closed, for log fields and metric labels."""

    DENIED = "denied"
    UNAVAILABLE = "unavailable"
    REJECTED = "rejected"


def classify(exc: CertificateRequestError) -> RequestFailure:
    if isinstance(exc, CertificateDeniedError):
        return RequestFailure.DENIED
    if isinstance(exc, CertificateRejectedError):
        return RequestFailure.REJECTED
    return RequestFailure.UNAVAILABLE


class IssuanceResult(StrEnum):
    """How a certificate request ended; closed, a metric label. `error`: the CA was unavailable, or it
    answered with a certificate we refused."""

    OK = "ok"
    DENIED = "denied"
    ERROR = "error"

    @classmethod
    def of(cls, failure: RequestFailure) -> IssuanceResult:
        return cls.DENIED if failure is RequestFailure.DENIED else cls.ERROR


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityMetrics:
    """What the manager did and holds, at one moment."""

    certificates: int
    # Every result, zero or not.
    requests: Mapping[IssuanceResult, int]
    # Certificates installed in place of one still held (renewed before expiry).
    renewals: int
    # Until the earliest not_after among the held certificates; None while none is held.
    seconds_to_earliest_expiry: float | None


_RETRY = Backoff(initial=timedelta(seconds=1), maximum=timedelta(minutes=5))
_SLOW_RETRY = Backoff(initial=timedelta(minutes=1), maximum=timedelta(minutes=30))


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagerSettings:
    # Retries after the CA was unreachable or failed transiently.
    retry: Backoff = _RETRY
    # Retries after a denial or a rejected request: a node not (yet) authorized must not hammer the CA.
    slow_retry: Backoff = _SLOW_RETRY
    # The clock is read at least this often while sleeping, so a wall-clock jump (suspend, NTP step) delays
    # a renewal by at most this much.
    max_sleep: timedelta = timedelta(minutes=5)
    # Requests in flight at once: a node full of new pods must not stampede the CA.
    max_concurrent_requests: int = 8

    def __post_init__(self) -> None:
        if self.max_sleep <= timedelta(0):
            raise ValueError("max_sleep must be positive")
        if self.max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be at least 1")


class IdentityManager:
    """`manager.set_wanted(...)` any time; `await manager.run()` (until cancelled) does the work.

    `clock` and `sleep` are the time seams: tests pass a fake clock and a sleep that waits for it. `draw`
    gives the uniform [0, 1) draws for renewal spread and retry jitter.
    """

    def __init__(
        self,
        *,
        node: str,
        client: CertificateClient,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        draw: Callable[[], float] = random.random,
        settings: ManagerSettings | None = None,
        listeners: Iterable[IdentityListener] = (),
    ) -> None:
        self.node = node
        self.settings = settings or ManagerSettings()
        self._client = client
        self._clock = clock
        self._sleep = sleep
        self._draw = draw
        self._listeners = list(listeners)
        self._wanted: frozenset[SpiffeId] = frozenset()
        self._wanted_changed = asyncio.Event()
        self._tasks: dict[SpiffeId, asyncio.Task[None]] = {}
        self._certificates: dict[SpiffeId, IdentityCertificate] = {}
        self._trust_bundle: tuple[str, ...] = ()
        self._permits = asyncio.Semaphore(self.settings.max_concurrent_requests)
        self._running = False
        self._requests = dict.fromkeys(IssuanceResult, 0)
        self._renewals = 0

    def add_listener(self, listener: IdentityListener) -> None:
        self._listeners.append(listener)

    @property
    def wanted(self) -> frozenset[SpiffeId]:
        return self._wanted

    def set_wanted(self, identities: frozenset[SpiffeId]) -> None:
        """The identities with a meshed pod on this node now (from the agent plan)."""
        if identities != self._wanted:
            self._wanted = frozenset(identities)
            self._wanted_changed.set()

    def state(self) -> IdentityState:
        return IdentityState(
            certificates=MappingProxyType(dict(self._certificates)), trust_bundle_pem=self._trust_bundle
        )

    def certificate(self, spiffe_id: SpiffeId) -> IdentityCertificate | None:
        return self._certificates.get(spiffe_id)

    def metrics(self) -> IdentityMetrics:
        earliest = min((c.not_after for c in self._certificates.values()), default=None)
        return IdentityMetrics(
            certificates=len(self._certificates),
            requests=MappingProxyType(dict(self._requests)),
            renewals=self._renewals,
            seconds_to_earliest_expiry=(earliest - self._clock.now()).total_seconds()
            if earliest is not None
            else None,
        )

    async def run(self) -> None:
        if self._running:
            raise RuntimeError("IdentityManager.run is already running")
        self._running = True
        try:
            async with asyncio.TaskGroup() as group:
                while True:
                    self._wanted_changed.clear()
                    self._reconcile(group)
                    await self._wanted_changed.wait()
        finally:
            # The TaskGroup has ended every identity task by now; forget them so a later run starts clean.
            self._tasks.clear()
            self._running = False

    def _reconcile(self, group: asyncio.TaskGroup) -> None:
        changed = False
        for spiffe_id in sorted(self._tasks.keys() - self._wanted, key=str):
            self._tasks.pop(spiffe_id).cancel()
            changed |= self._certificates.pop(spiffe_id, None) is not None
            log.info("dropped identity %s: no pod of it left on node %s", spiffe_id, self.node)
        for spiffe_id in sorted(self._wanted - self._tasks.keys(), key=str):
            task = group.create_task(self._maintain(spiffe_id), name=f"identity {spiffe_id}")
            self._tasks[spiffe_id] = task
        if changed:
            self._notify()

    async def _maintain(self, spiffe_id: SpiffeId) -> None:
        failures = 0
        while True:
            self._expire_if_due(spiffe_id)
            key = generate_key(spiffe_id)
            try:
                signed = await self._request(key)
            except CertificateRequestError as exc:
                self._requests[IssuanceResult.of(classify(exc))] += 1
                await self._sleep_until(self._clock.now() + self._retry_delay(spiffe_id, exc, failures))
                failures += 1
                continue
            failures = 0
            self._requests[IssuanceResult.OK] += 1
            self._install(IdentityCertificate(key=key, certificate=signed))
            now = self._clock.now()
            # Never earlier than the first retry step, so a CA handing out very short lives cannot spin us.
            renew_at = max(
                renewal_time(signed.not_before, signed.not_after, self._draw()),
                now + self.settings.retry.initial,
            )
            log.info(
                "installed certificate serial %x for %s, valid until %s, renewing at %s",
                signed.serial,
                spiffe_id,
                signed.not_after.isoformat(),
                renew_at.isoformat(),
                extra={"node": self.node, "spiffe_id": str(spiffe_id)},
            )
            await self._sleep_until(renew_at)

    async def _request(self, key: WorkloadKey) -> SignedCertificate:
        csr = key.csr_pem()
        async with self._permits:
            signed = await self._client.sign(csr, key.spiffe_id, self.node)
        if not key.matches(signed.leaf):
            raise CertificateRejectedError(f"the CA certified another key than ours for {key.spiffe_id}")
        return signed

    def _retry_delay(self, spiffe_id: SpiffeId, exc: CertificateRequestError, failures: int) -> timedelta:
        kind = classify(exc)
        backoff = self.settings.retry if kind is RequestFailure.UNAVAILABLE else self.settings.slow_retry
        now = self._clock.now()
        current = self._certificates.get(spiffe_id)
        # With no valid certificate there is no expiry to bring the retry forward to.
        not_after = current.not_after if current is not None else now
        delay = retry_delay(backoff, failures, self._draw(), now=now, not_after=not_after)
        log.warning(
            "certificate request for %s failed (%s, attempt %d), retrying in %.1fs%s: %s",
            spiffe_id,
            kind,
            failures + 1,
            delay.total_seconds(),
            f"; serving the current one until {not_after.isoformat()}" if current is not None else "",
            exc,
            extra={"node": self.node, "spiffe_id": str(spiffe_id), "failure": str(kind)},
        )
        return delay

    def _install(self, material: IdentityCertificate) -> None:
        if material.spiffe_id in self._certificates:
            self._renewals += 1
        self._certificates[material.spiffe_id] = material
        self._trust_bundle = material.certificate.trust_bundle_pem
        self._notify()

    def _expire_if_due(self, spiffe_id: SpiffeId) -> None:
        current = self._certificates.get(spiffe_id)
        if current is not None and self._clock.now() >= current.not_after:
            del self._certificates[spiffe_id]
            log.error(
                "certificate serial %x for %s expired before it could be renewed; withdrawn",
                current.serial,
                spiffe_id,
                extra={"node": self.node, "spiffe_id": str(spiffe_id)},
            )
            self._notify()

    async def _sleep_until(self, when: datetime) -> None:
        while (remaining := when - self._clock.now()) > timedelta(0):
            await self._sleep(min(remaining, self.settings.max_sleep).total_seconds())

    def _notify(self) -> None:
        state = self.state()
        for listener in self._listeners:
            listener.identities_changed(state)
