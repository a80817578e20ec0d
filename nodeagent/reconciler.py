"""Keeps the eBPF maps equal to the plan.

Each meshed pod is known to the maps by its network namespace's cookie, learned from the kernel through the
plan's netns reference. Cookies are cached per namespace (device, inode of the netns file), so a pod is asked
once however often the plan changes. A pod whose namespace cannot be opened yet (the sandbox is still being
created, a pid that is gone) is left out, reported, and retried with backoff; it never blocks the others.
The first reconcile after start removes entries of pods no longer in the plan and leaves the others as
they are, which is how a restarted agent adopts the pinned maps.

Every meshed pod's namespace also gets the inbound (sk_lookup) hook, which enforces STRICT mTLS from the
inbound policy map; attached once per namespace and kept while the pod is meshed, so switching a pod's
mode is a map update only. Pinned links of namespaces no longer meshed are detached.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from nodeagent.datapath import (
    DatapathError,
    DesiredState,
    NetnsError,
    NetnsSyncReport,
    ReconcileReport,
    netns_cookie,
)
from nodeagent.plan import EMPTY_PLAN, NetnsRef, Plan, desired_state
from nodeagent.podnetns import PodNetnsResolver, ProcCgroupScan

log = logging.getLogger(__name__)


class MapsPort(Protocol):
    """What the reconciler needs of the data path's maps (DatapathMaps implements it)."""

    def reconcile(self, desired: DesiredState) -> ReconcileReport: ...


class NetnsHookPort(Protocol):
    """Attaches the inbound hook to exactly the given namespaces (NetnsHooks implements it)."""

    def sync(self, wanted: Mapping[int, Path]) -> NetnsSyncReport: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PodNetns:
    """A pod's network namespace: its cookie, and a file that opens it."""

    cookie: int
    path: Path


class CookieSource(Protocol):
    """Learns the netns behind a reference; raises DatapathError (NetnsError) when it cannot."""

    async def resolve(self, ref: NetnsRef) -> PodNetns: ...


class NetnsCookies(CookieSource):
    """The kernel's answer, cached per namespace: a netns file's (device, inode) names the namespace.
    A reference by pod UID is first resolved to a netns file by `resolver`."""

    def __init__(
        self, lookup: Callable[[Path], int] | None = None, *, resolver: PodNetnsResolver | None = None
    ) -> None:
        self._lookup = lookup or netns_cookie
        self._resolver = resolver or ProcCgroupScan()
        self._cache: dict[tuple[int, int], int] = {}

    async def cookie(self, ref: NetnsRef) -> int:
        return (await self.resolve(ref)).cookie

    async def resolve(self, ref: NetnsRef) -> PodNetns:
        if ref.pod_uid is not None:
            # A /proc scan reads a file per process: off the loop.
            path = await asyncio.to_thread(self._resolver.resolve, ref.pod_uid)
        else:
            path = ref.netns_file()
        try:
            info = os.stat(path)
        except OSError as exc:
            raise NetnsError(f"cannot open the netns of {ref}: {exc.strerror}") from exc
        key = (info.st_dev, info.st_ino)
        cached = self._cache.get(key)
        if cached is None:
            # Entering the namespace happens on a fresh thread (datapath.netns): keep it off the loop.
            cached = self._cache[key] = await asyncio.to_thread(self._lookup, path)
        return PodNetns(cookie=cached, path=Path(path))

    def __len__(self) -> int:
        return len(self._cache)


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingPod:
    """A pod of the plan not in the maps yet, and why."""

    uid: str
    ref: str
    reason: str
    attempts: int
    next_try: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySettings:
    initial: float = 0.2
    maximum: float = 10.0


class Reconciler:
    """`apply(plan)` on every new plan; `run()` retries pods whose namespace could not be opened yet."""

    def __init__(
        self,
        maps: MapsPort,
        cookies: CookieSource,
        *,
        retry: RetrySettings | None = None,
        forbidden: Mapping[int, str] | None = None,
        hooks: NetnsHookPort | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._maps = maps
        self._cookies = cookies
        self._hooks = hooks
        self._retry = retry or RetrySettings()
        # Cookies never to mesh, with why: the node's own namespace (a hostNetwork pod shares it with
        # Envoy, whose connections must never be redirected).
        self._forbidden = dict(forbidden or {})
        self._clock = clock
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._plan: Plan = EMPTY_PLAN
        self._applied = False
        self._resolved: dict[str, tuple[NetnsRef, PodNetns]] = {}
        self._pending: dict[str, PendingPod] = {}
        self.errors = 0
        self.last_report: ReconcileReport | None = None
        self.last_hooks: NetnsSyncReport | None = None

    @property
    def plan(self) -> Plan:
        return self._plan

    @property
    def applied(self) -> bool:
        """Whether a plan has been applied (before that, the pinned maps are left exactly as found)."""
        return self._applied

    @property
    def pending(self) -> Mapping[str, PendingPod]:
        return MappingProxyType(dict(self._pending))

    @property
    def meshed(self) -> int:
        """Pods of the plan whose namespace is in the maps."""
        return len(self._resolved)

    async def apply(self, plan: Plan) -> ReconcileReport:
        """Makes the maps match `plan`. Raises PlanError or DatapathError when it cannot; pods whose
        namespace cannot be opened are pending, not errors."""
        async with self._lock:
            self._plan = plan
            for uid in list(self._resolved):
                if uid not in plan.workloads:
                    del self._resolved[uid]
            for uid in list(self._pending):
                if uid not in plan.workloads:
                    del self._pending[uid]
            now = self._clock()
            for uid, workload in sorted(plan.workloads.items()):
                # Resolved pods are looked up again (a stat, then the cache): a pod's sandbox can be
                # recreated under the same reference, with a new namespace.
                previous = self._pending.get(uid)
                if previous is not None and previous.ref == str(workload.netns) and previous.next_try > now:
                    continue
                await self._resolve(uid, workload.netns, previous)
            report = self._reconcile()
            self._applied = True
        self._wake.set()
        return report

    async def run(self) -> None:
        """Retries pending pods until cancelled."""
        while True:
            due = min((p.next_try for p in self._pending.values()), default=None)
            self._wake.clear()
            if due is None:
                await self._wake.wait()
                continue
            delay = due - self._clock()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                    continue
                except TimeoutError:
                    pass
            await self._retry_due()

    async def _retry_due(self) -> None:
        async with self._lock:
            now = self._clock()
            changed = False
            for uid, pod in sorted(self._pending.items()):
                workload = self._plan.workloads.get(uid)
                if pod.next_try > now or workload is None:
                    continue
                await self._resolve(uid, workload.netns, pod)
                changed = changed or uid in self._resolved
            if changed:
                try:
                    self._reconcile()
                except DatapathError as exc:
                    self.errors += 1
                    log.error("reconciling the maps for newly reachable pods failed: %s", exc)

    async def _resolve(self, uid: str, ref: NetnsRef, previous: PendingPod | None) -> None:
        workload = self._plan.workloads[uid]
        try:
            netns = await self._cookies.resolve(ref)
            reason = self._forbidden.get(netns.cookie)
        except DatapathError as exc:
            reason = str(exc)
        if reason is None:
            self._resolved[uid] = (ref, netns)
            if self._pending.pop(uid, None) is not None:
                log.info("pod %s (uid %s) is reachable now: netns cookie %s", workload.ref, uid, netns.cookie)
            return
        self._resolved.pop(uid, None)
        attempts = previous.attempts + 1 if previous is not None and previous.ref == str(ref) else 1
        delay = min(self._retry.maximum, self._retry.initial * 2 ** (attempts - 1))
        self._pending[uid] = PendingPod(
            uid=uid, ref=str(ref), reason=reason, attempts=attempts, next_try=self._clock() + delay
        )
        log.warning(
            "pod %s (uid %s) not meshed yet (attempt %d, retry in %.1fs): %s",
            workload.ref,
            uid,
            attempts,
            delay,
            reason,
        )

    def _reconcile(self) -> ReconcileReport:
        cookies = {uid: netns.cookie for uid, (_, netns) in self._resolved.items()}
        try:
            report = self._maps.reconcile(desired_state(self._plan, cookies))
            # After the maps: a newly hooked namespace finds its policy already there.
            if self._hooks is not None:
                wanted = {netns.cookie: netns.path for _, netns in self._resolved.values()}
                self.last_hooks = self._hooks.sync(wanted)
        except DatapathError:
            self.errors += 1
            raise
        self.last_report = report
        return report
