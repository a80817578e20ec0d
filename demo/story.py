"""The demo's story after the application is up: each step applies its YAML with kubectl (if it has any),
waits until every node's Envoy and agent ACKed the result, sends traffic from inside the pods and returns
what happened as a value. Steps never print: `report()` and `summary()` say it, `problems()` says what
went wrong (an empty list is success), `warnings()` what is worth knowing but is not a failure.

Steps run in order on one mesh: each builds on the config the previous ones applied.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from demo.app import DemoApp, spec
from demo.kubectl import Applied, KubectlRunner
from demo.manifests import TESTER_HEADER, reviews_authorization, reviews_route, strict_mtls
from demo.traffic import Sample, p50_ms, send, statuses
from integration.mesh import EchoReply, MeshHarness

SPLIT: Final = (80, 20)
SIGMAS: Final = 5.0
INBOUND_ENTRIES: Final = 'nodemesh_datapath_map_entries{map="inbound_policy"}'


@dataclass(slots=True, kw_only=True)
class DemoContext:
    """What every step works with: the running mesh, the deployed application, kubectl, request counts."""

    mesh: MeshHarness
    app: DemoApp
    kubectl: KubectlRunner
    baseline_requests: int = 50
    split_requests: int = 100
    header_requests: int = 20
    authz_requests: int = 10


class StepResult(Protocol):
    def report(self) -> list[str]: ...

    def summary(self) -> str: ...

    def problems(self) -> list[str]: ...

    def warnings(self) -> list[str]: ...


def _shares(app: DemoApp, samples: Sequence[Sample]) -> str:
    seen = Counter(app.variant(s.pod) for s in samples)
    return ", ".join(f"{name} {count}" for name, count in sorted(seen.items()))


def _status_text(samples: Sequence[Sample]) -> str:
    return ", ".join(
        f"{status or 'no answer'} x{n}" for status, n in sorted(statuses(samples).items(), reverse=True)
    )


def _unexpected_statuses(who: str, samples: Sequence[Sample], wanted: int) -> list[str]:
    bad = [s for s in samples if s.status != wanted]
    if not bad:
        return []
    example = bad[0].reply.error or bad[0].reply.body[:120]
    return [f"{who}: {len(bad)} of {len(samples)} requests got {_status_text(bad)}, not {wanted} ({example})"]


# -- 1. baseline -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BaselineResult:
    """frontend -> reviews (no route yet: both versions answer) and frontend -> ratings-db over TCP."""

    app: DemoApp
    http: tuple[Sample, ...]
    tcp: EchoReply
    node_ips: frozenset[str]

    @property
    def identities(self) -> frozenset[str | None]:
        return frozenset(s.client_identity for s in self.http)

    @property
    def p50_ms(self) -> float:
        return p50_ms(self.http)

    def report(self) -> list[str]:
        ids = ", ".join(sorted(i or "none" for i in self.identities))
        return [
            f"frontend -> reviews: {len(self.http)} requests, {_status_text(self.http)}; "
            f"answered by {_shares(self.app, self.http)}",
            f"the reviews pods saw the caller as {ids} (x-forwarded-client-cert, over HBONE mTLS)",
            f"latency p50 {self.p50_ms:.2f} ms (new connection each, through both nodes' Envoys)",
            f"frontend -> ratings-db (TCP {self.tcp_target}): {self._tcp_text()}",
        ]

    @property
    def tcp_target(self) -> str:
        return self.app.tcp("ratings-db").removeprefix("tcp://")

    def _tcp_text(self) -> str:
        if self.tcp.pod is None:
            return f"FAILED ({self.tcp.error})"
        via = "a node Envoy" if self.tcp.peer_ip in self.node_ips else "the client itself"
        return f"echoed by {self.tcp.pod}, connected from {self.tcp.peer} ({via})"

    def summary(self) -> str:
        return (
            f"frontend -> reviews {_status_text(self.http)}, p50 {self.p50_ms:.2f} ms, "
            f"identity {', '.join(sorted(i or 'none' for i in self.identities))}; "
            f"ratings-db over TCP {'ok' if self.tcp.pod else 'FAILED'}"
        )

    def problems(self) -> list[str]:
        problems = _unexpected_statuses("frontend -> reviews", self.http, 200)
        expected = spec("frontend").spiffe_id
        if self.identities != {expected}:
            problems.append(f"the server saw callers {sorted(map(str, self.identities))}, not {expected}")
        if self.tcp.pod != self.app.pod("ratings-db").ref:
            problems.append(
                f"frontend -> ratings-db over TCP: {self.tcp.error or self.tcp.body or 'no reply'}"
            )
        return problems

    def warnings(self) -> list[str]:
        return []


async def baseline(ctx: DemoContext) -> BaselineResult:
    frontend = ctx.app.pod("frontend")
    http = await send(ctx.mesh, frontend, ctx.app.url("reviews"), ctx.baseline_requests)
    tcp = await ctx.mesh.call(frontend, ctx.app.tcp("ratings-db"), message="SELECT stars")
    return BaselineResult(
        app=ctx.app, http=tuple(http), tcp=tcp, node_ips=frozenset(n.ip for n in ctx.mesh.nodes)
    )


# -- 2. an 80/20 split -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitResult:
    app: DemoApp
    applied: Applied
    weights: tuple[int, int]
    samples: tuple[Sample, ...]

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.app.variant(s.pod) for s in self.samples)

    def bound(self) -> tuple[float, float]:
        """v2's count within SIGMAS binomial standard deviations of its expected share (at least one)."""
        n, p = len(self.samples), self.weights[1] / sum(self.weights)
        sigma = math.sqrt(n * p * (1 - p))
        return max(1.0, n * p - SIGMAS * sigma), n * p + SIGMAS * sigma

    def report(self) -> list[str]:
        v1, v2 = self.weights
        low, high = self.bound()
        counts = self.counts
        return [
            *self.applied.lines(),
            f"{len(self.samples)} requests from frontend: v1 {counts['v1']}, v2 {counts['v2']} "
            f"(weights {v1}/{v2}; v2 expected {low:.0f}..{high:.0f})",
        ]

    def summary(self) -> str:
        counts = self.counts
        v1, v2 = self.weights
        return f"v1 {counts['v1']}, v2 {counts['v2']} of {len(self.samples)} (weights {v1}/{v2})"

    def problems(self) -> list[str]:
        problems = _unexpected_statuses("frontend -> reviews", self.samples, 200)
        counts = self.counts
        other = {k: n for k, n in counts.items() if k not in ("v1", "v2")}
        if other:
            problems.append(f"requests answered by neither version: {other}")
        low, high = self.bound()
        if not low <= counts["v2"] <= high:
            problems.append(
                f"v2 answered {counts['v2']} of {len(self.samples)}, outside {low:.0f}..{high:.0f}"
            )
        return problems

    def warnings(self) -> list[str]:
        return []


async def split(ctx: DemoContext) -> SplitResult:
    applied = await ctx.kubectl.apply("2-split", [reviews_route(split=SPLIT)])
    await ctx.mesh.wait_synced()
    samples = await send(ctx.mesh, ctx.app.pod("frontend"), ctx.app.url("reviews"), ctx.split_requests)
    return SplitResult(app=ctx.app, applied=applied, weights=SPLIT, samples=tuple(samples))


# -- 3. a header route -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderRouteResult:
    app: DemoApp
    applied: Applied
    with_header: tuple[Sample, ...]
    without_header: tuple[Sample, ...]

    def report(self) -> list[str]:
        name, value = TESTER_HEADER
        return [
            *self.applied.lines(),
            f"with '{name}: {value}': {_shares(self.app, self.with_header)} of {len(self.with_header)}",
            f"without it: {_shares(self.app, self.without_header)} of {len(self.without_header)} "
            "(still the 80/20 split)",
        ]

    def summary(self) -> str:
        name, value = TESTER_HEADER
        return (
            f"'{name}: {value}' -> {_shares(self.app, self.with_header)}; "
            f"others -> {_shares(self.app, self.without_header)}"
        )

    def problems(self) -> list[str]:
        problems = _unexpected_statuses("with the header", self.with_header, 200)
        problems += _unexpected_statuses("without the header", self.without_header, 200)
        wrong = [s.pod for s in self.with_header if self.app.variant(s.pod) != "v2"]
        if wrong:
            problems.append(
                f"{len(wrong)} requests with the header were answered by {sorted(set(map(str, wrong)))}"
            )
        return problems

    def warnings(self) -> list[str]:
        return []


async def header_route(ctx: DemoContext) -> HeaderRouteResult:
    applied = await ctx.kubectl.apply("3-header-route", [reviews_route(split=SPLIT, header_route=True)])
    await ctx.mesh.wait_synced()
    frontend, url = ctx.app.pod("frontend"), ctx.app.url("reviews")
    name, value = TESTER_HEADER
    with_header, without_header = await asyncio.gather(
        send(ctx.mesh, frontend, url, ctx.header_requests, headers={name: value}),
        send(ctx.mesh, frontend, url, ctx.header_requests),
    )
    return HeaderRouteResult(
        app=ctx.app, applied=applied, with_header=tuple(with_header), without_header=tuple(without_header)
    )


# -- 4. authorization -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationResult:
    applied: Applied
    frontend: tuple[Sample, ...]
    batch: tuple[Sample, ...]

    def report(self) -> list[str]:
        denied = next((s.reply.body.strip() for s in self.batch if s.status == 403), "")
        return [
            *self.applied.lines(),
            f"frontend ({spec('frontend').spiffe_id}): {_status_text(self.frontend)}",
            f"batch    ({spec('batch').spiffe_id}): {_status_text(self.batch)}"
            + (f" '{denied}'" if denied else ""),
        ]

    def summary(self) -> str:
        return f"frontend {_status_text(self.frontend)}; batch {_status_text(self.batch)}"

    def problems(self) -> list[str]:
        return _unexpected_statuses("frontend", self.frontend, 200) + _unexpected_statuses(
            "batch", self.batch, 403
        )

    def warnings(self) -> list[str]:
        return []


async def authorization(ctx: DemoContext) -> AuthorizationResult:
    applied = await ctx.kubectl.apply("5-authorization", reviews_authorization())
    await ctx.mesh.wait_synced()
    url = ctx.app.url("reviews")
    frontend, batch = await asyncio.gather(
        send(ctx.mesh, ctx.app.pod("frontend"), url, ctx.authz_requests),
        send(ctx.mesh, ctx.app.pod("batch"), url, ctx.authz_requests),
    )
    return AuthorizationResult(applied=applied, frontend=tuple(frontend), batch=tuple(batch))


# -- 5. STRICT mTLS ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StrictMtlsResult:
    """A plaintext client outside the mesh calls a reviews pod directly, before and after STRICT; meshed
    callers keep working. `inbound_entries`: the nodes' inbound-policy map entries (None when the agents do
    not report them: this build has no inbound enforcement)."""

    applied: Applied
    target: str
    before: Sample
    after: Sample
    meshed: tuple[Sample, ...]
    inbound_entries: int | None

    @property
    def refused(self) -> bool:
        return self.after.status == 0

    @property
    def enforcement_present(self) -> bool:
        return bool(self.inbound_entries)

    def _plain(self, sample: Sample) -> str:
        if sample.status == 0:
            return f"refused ({sample.reply.error or 'no answer'})"
        return f"{sample.status} from {sample.pod}"

    def report(self) -> list[str]:
        who = spec("legacy-client").ref
        lines = [
            *self.applied.lines(),
            f"{who} (outside the mesh) -> {self.target} in plaintext, before: {self._plain(self.before)}",
            f"{who} -> {self.target} in plaintext, after:  {self._plain(self.after)}",
            f"frontend -> reviews (mTLS): {_status_text(self.meshed)}",
        ]
        if self.inbound_entries is not None:
            lines.append(f"inbound enforcement entries in the nodes' eBPF maps: {self.inbound_entries}")
        return lines

    def summary(self) -> str:
        plain = "refused" if self.refused else f"NOT refused ({self._plain(self.after)})"
        return f"plaintext from outside {plain}; meshed frontend {_status_text(self.meshed)}"

    def problems(self) -> list[str]:
        problems = _unexpected_statuses("frontend -> reviews under STRICT", self.meshed, 200)
        if self.before.status != 200:
            problems.append(f"before STRICT the plaintext client could not reach {self.target} either")
        if not self.refused and self.enforcement_present:
            problems.append(f"STRICT is programmed but plaintext still reached {self.target}")
        return problems

    def warnings(self) -> list[str]:
        if self.refused or self.enforcement_present:
            return []
        return [
            "this build does not enforce STRICT yet (no inbound policy in the nodes' eBPF maps): "
            f"plaintext still reached {self.target}"
        ]


def _inbound_entries(mesh: MeshHarness) -> int | None:
    total: int | None = None
    for node in mesh.nodes:
        if node.agent is None:
            continue
        value = node.agent.metrics().get(INBOUND_ENTRIES)
        if value is not None:
            total = (total or 0) + int(value)
    return total


async def strict(ctx: DemoContext) -> StrictMtlsResult:
    outsider, reviews = ctx.app.pod("legacy-client"), ctx.app.pod("reviews-v1")
    target = f"{reviews.ip}:{spec('reviews-v1').port}"
    url = f"http://{target}/"
    (before,) = await send(ctx.mesh, outsider, url, 1, per_request=2.0)
    applied = await ctx.kubectl.apply("4-strict-mtls", [strict_mtls()])
    await ctx.mesh.wait_synced()
    (after,) = await send(ctx.mesh, outsider, url, 1, per_request=2.0)
    meshed = await send(ctx.mesh, ctx.app.pod("frontend"), ctx.app.url("reviews"), ctx.authz_requests)
    entries = await asyncio.to_thread(_inbound_entries, ctx.mesh)
    return StrictMtlsResult(
        applied=applied,
        target=target,
        before=before,
        after=after,
        meshed=tuple(meshed),
        inbound_entries=entries,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    key: str
    title: str
    run: Callable[[DemoContext], Awaitable[StepResult]]


STEPS: Final[tuple[Step, ...]] = (
    Step(key="baseline", title="baseline: frontend -> reviews, frontend -> ratings-db", run=baseline),
    Step(key="split", title="HTTPRoute: split reviews 80/20 between v1 and v2", run=split),
    Step(key="header", title="header route: x-user: tester -> v2", run=header_route),
    # STRICT first: once an ALLOW policy selects reviews, plaintext to it is refused anyway (an
    # identity-less caller cannot be authorized), so STRICT would have nothing left to show.
    Step(key="strict", title="PeerAuthentication: STRICT mTLS in shop", run=strict),
    Step(key="authz", title="AuthorizationPolicy: deny batch, allow frontend", run=authorization),
)
