"""Route configurations: one Service port's HTTPRoutes (or GRPCRoutes) as an Envoy RouteConfiguration.

GAMMA: the route config is chosen by the original destination (the Service's ClusterIP:port), never by the
Host header, so its one virtual host accepts any host. Routes attached to the port are merged in the spec's
precedence order; a request that matches none of them gets 404. A port with no attached route gets one
default route to its own cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import regex_pb2

from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.duration import Duration
from controlplane.model.policy import FaultInjection, RetryPolicy
from controlplane.model.refs import ObjectRef
from controlplane.model.routes import (
    BackendRef,
    ExtensionRefFilter,
    GRPCBackendRef,
    GRPCRoute,
    GRPCRouteFilter,
    GRPCRouteRule,
    HeaderModifierFilter,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteMatch,
    HTTPRouteRule,
    PathMatchType,
    PathModifier,
    PathModifierType,
    RequestMirrorFilter,
    RequestRedirectFilter,
    Route,
    RouteRetry,
    URLRewriteFilter,
)
from controlplane.model.service import Protocol, Service, ServicePort, ServiceType
from controlplane.translate import naming
from controlplane.translate.matches import (
    PrecedenceKey,
    grpc_precedence,
    grpc_route_match,
    http_precedence,
    http_route_match,
    normalized_prefix,
)
from controlplane.translate.messages import duration, pack, per_million
from controlplane.translate.policies import EffectivePolicy
from controlplane.translate.settings import TranslateSettings

_REDIRECT_CODES = {
    301: route_components_pb2.RedirectAction.MOVED_PERMANENTLY,
    302: route_components_pb2.RedirectAction.FOUND,
    303: route_components_pb2.RedirectAction.SEE_OTHER,
    307: route_components_pb2.RedirectAction.TEMPORARY_REDIRECT,
    308: route_components_pb2.RedirectAction.PERMANENT_REDIRECT,
}
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
_DEFAULT_RETRY_ON = "connect-failure,refused-stream,5xx"
_DEFAULT_GRPC_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteInputs:
    """Everything one route configuration is built from: equal inputs give an equal configuration, so the
    translator memoizes on this value."""

    name: str
    service: Service
    port: ServicePort
    # The routes attached to this port (all HTTPRoutes or all GRPCRoutes), ordered by reference.
    routes: tuple[Route, ...]
    # Every Service the routes send or mirror to: the Service, or None when it does not exist.
    backends: tuple[tuple[ObjectRef, Service | None], ...]
    # Policies of the backend clusters the routes use, by cluster name (consistent-hash settings).
    backend_policies: tuple[tuple[str, EffectivePolicy], ...]
    # The policy of the Service port itself: default timeout, retries, fault injection.
    policy: EffectivePolicy
    settings: TranslateSettings


@dataclass(slots=True)
class _Entry:
    key: PrecedenceKey
    route: route_components_pb2.Route
    owner: Route
    field: str


@dataclass(slots=True)
class _Builder:
    inputs: RouteInputs
    backends: dict[ObjectRef, Service | None]
    backend_policies: dict[str, EffectivePolicy]
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def report(self, severity: Severity, reason: Reason, route: Route, path: str, message: str) -> None:
        self.diagnostics.append(
            Diagnostic(severity=severity, reason=reason, ref=route.ref, field=path, message=message)
        )

    # -- backends ---------------------------------------------------------------------------------

    def resolve(self, backend: BackendRef | GRPCBackendRef, route: Route, path: str) -> str | None:
        """The cluster of a backendRef, or None (reported) when it cannot be used."""
        ref = backend.service_ref
        if ref is None:
            self.report(
                Severity.ERROR,
                Reason.UNSUPPORTED_FEATURE,
                route,
                path,
                f"backend kind {backend.group or 'core'}/{backend.kind} is not supported; only Services",
            )
            return None
        service = self.backends.get(ref)
        if service is None:
            self.report(Severity.ERROR, Reason.BACKEND_NOT_FOUND, route, path, f"{ref} does not exist")
            return None
        if backend.port is None:
            self.report(
                Severity.ERROR, Reason.MISSING_FIELD, route, f"{path}.port", "a Service backend needs a port"
            )
            return None
        if service.type is ServiceType.EXTERNAL_NAME:
            self.report(
                Severity.ERROR,
                Reason.UNSUPPORTED_FEATURE,
                route,
                path,
                f"{ref} is an ExternalName Service, which the mesh does not route to",
            )
            return None
        service_port = service.port(backend.port)
        if service_port is None or service_port.protocol is not Protocol.TCP:
            self.report(
                Severity.ERROR,
                Reason.BACKEND_NOT_FOUND,
                route,
                f"{path}.port",
                f"{ref} has no TCP port {backend.port}",
            )
            return None
        return naming.cluster(service.namespace, service.name, backend.port)

    def mirror(
        self, f: RequestMirrorFilter, route: Route, path: str
    ) -> route_components_pb2.RouteAction.RequestMirrorPolicy | None:
        target = f.backend
        ref = target.service_ref
        service = self.backends.get(ref) if ref is not None else None
        target_port = service.port(target.port) if service is not None and target.port is not None else None
        if (
            service is None
            or target_port is None
            or target_port.protocol is not Protocol.TCP
            or service.type is ServiceType.EXTERNAL_NAME
        ):
            what = ref if ref is not None else f"{target.group or 'core'}/{target.kind} {target.name}"
            port = f" port {target.port}" if target.port is not None else " (no port)"
            self.report(
                Severity.WARNING,
                Reason.BACKEND_NOT_FOUND,
                route,
                f"{path}.requestMirror.backendRef",
                f"mirror target {what}{port} does not exist; requests are not mirrored",
            )
            return None
        policy = route_components_pb2.RouteAction.RequestMirrorPolicy(
            cluster=naming.cluster(service.namespace, service.name, target_port.port)
        )
        if (f.numerator, f.denominator) != (100, 100):
            policy.runtime_fraction.default_value.CopyFrom(per_million(f.numerator, f.denominator))
        return policy

    # -- one (rule, match) ------------------------------------------------------------------------

    def entry(
        self,
        *,
        route: Route,
        rule_index: int,
        match_index: int,
        match: route_components_pb2.RouteMatch,
        http_match: HTTPRouteMatch | None,
        rule: HTTPRouteRule | GRPCRouteRule,
    ) -> route_components_pb2.Route:
        rule_path = f"spec.rules[{rule_index}]"
        out = route_components_pb2.Route(
            name=naming.route_entry(route.ref, rule_index, match_index), match=match
        )
        filters: tuple[HTTPRouteFilter, ...] | tuple[GRPCRouteFilter, ...] = rule.filters
        for i, f in enumerate(filters):
            if isinstance(f, ExtensionRefFilter):
                self.report(
                    Severity.ERROR,
                    Reason.UNSUPPORTED_FEATURE,
                    route,
                    f"{rule_path}.filters[{i}]",
                    f"ExtensionRef filter {f.group}/{f.kind} {f.name} is not supported: matching requests "
                    "get 500",
                )
                out.direct_response.status = 500
                return out
        for f in filters:
            if isinstance(f, HeaderModifierFilter):
                _modify_headers(out, f)
        redirect = next((f for f in filters if isinstance(f, RequestRedirectFilter)), None)
        if redirect is not None:
            out.redirect.CopyFrom(_redirect(redirect, http_match))
            return out
        self.forward(out, route, rule, rule_path, http_match)
        return out

    def forward(
        self,
        out: route_components_pb2.Route,
        route: Route,
        rule: HTTPRouteRule | GRPCRouteRule,
        rule_path: str,
        http_match: HTTPRouteMatch | None,
    ) -> None:
        clusters: list[route_components_pb2.WeightedCluster.ClusterWeight] = []
        invalid_weight = 0
        total_weight = 0
        backend_refs: list[BackendRef | GRPCBackendRef] = list(rule.backend_refs)
        for i, backend in enumerate(backend_refs):
            path = f"{rule_path}.backendRefs[{i}]"
            name = self.resolve(backend, route, path)
            if name is not None and any(isinstance(f, ExtensionRefFilter) for f in backend.filters):
                self.report(
                    Severity.ERROR,
                    Reason.UNSUPPORTED_FEATURE,
                    route,
                    f"{path}.filters",
                    "ExtensionRef filters are not supported: this backend's share gets 500",
                )
                name = None
            total_weight += backend.weight
            if backend.weight == 0:
                continue
            if name is None:
                invalid_weight += backend.weight
                continue
            weighted = route_components_pb2.WeightedCluster.ClusterWeight(name=name)
            weighted.weight.value = backend.weight
            backend_filters: list[HTTPRouteFilter] = list(backend.filters)
            for j, bf in enumerate(backend_filters):
                if isinstance(bf, HeaderModifierFilter):
                    _modify_headers(weighted, bf)
                elif not isinstance(bf, ExtensionRefFilter):
                    self.report(
                        Severity.WARNING,
                        Reason.UNSUPPORTED_FEATURE,
                        route,
                        f"{path}.filters[{j}]",
                        f"{bf.type} is not supported on a backendRef (only header modifiers); ignored",
                    )
            clusters.append(weighted)
        if not backend_refs:
            # The spec: no backends and no filter that answers: 500.
            out.direct_response.status = 500
            return
        if total_weight == 0:
            self.report(
                Severity.WARNING,
                Reason.NO_BACKENDS,
                route,
                f"{rule_path}.backendRefs",
                "every backendRef has weight 0: matching requests get 500",
            )
            out.direct_response.status = 500
            return
        if not clusters:
            out.direct_response.status = 500
            return
        action = out.route
        bare = route_components_pb2.WeightedCluster.ClusterWeight(
            name=clusters[0].name, weight=clusters[0].weight
        )
        simple = invalid_weight == 0 and len(clusters) == 1 and clusters[0] == bare
        if simple:
            action.cluster = clusters[0].name
        else:
            if invalid_weight:
                invalid = route_components_pb2.WeightedCluster.ClusterWeight(name=naming.INVALID_BACKEND)
                invalid.weight.value = invalid_weight
                clusters.append(invalid)
                action.cluster_not_found_response_code = (
                    route_components_pb2.RouteAction.INTERNAL_SERVER_ERROR
                )
            action.weighted_clusters.clusters.extend(clusters)
        filters: tuple[HTTPRouteFilter, ...] | tuple[GRPCRouteFilter, ...] = rule.filters
        for i, f in enumerate(filters):
            if isinstance(f, URLRewriteFilter):
                _rewrite(action, f, http_match)
            elif isinstance(f, RequestMirrorFilter):
                mirror = self.mirror(f, route, f"{rule_path}.filters[{i}]")
                if mirror is not None:
                    action.request_mirror_policies.append(mirror)
        timeouts = rule.timeouts if isinstance(rule, HTTPRouteRule) else None
        retry = rule.retry if isinstance(rule, HTTPRouteRule) else None
        self.timeouts_and_retries(
            action,
            timeouts.request if timeouts is not None else None,
            timeouts.backend_request if timeouts is not None else None,
            retry,
            grpc=isinstance(route, GRPCRoute),
        )
        self.hash_policy(action, [c.name for c in clusters])

    def timeouts_and_retries(
        self,
        action: route_components_pb2.RouteAction,
        request: Duration | None,
        backend_request: Duration | None,
        retry: RouteRetry | None,
        *,
        grpc: bool,
    ) -> None:
        policy = self.inputs.policy
        timeout = request if request is not None else policy.timeout
        action.timeout.CopyFrom(
            duration(timeout if timeout is not None else self.inputs.settings.route_timeout)
        )
        retry_policy = _retry_policy(retry, policy.retries, grpc=grpc)
        if backend_request is not None:
            if retry_policy is None:
                retry_policy = route_components_pb2.RetryPolicy()
                retry_policy.num_retries.value = 0
            retry_policy.per_try_timeout.CopyFrom(duration(backend_request))
        if retry_policy is not None:
            action.retry_policy.CopyFrom(retry_policy)

    def hash_policy(self, action: route_components_pb2.RouteAction, clusters: list[str]) -> None:
        """Consistent hashing is the backend cluster's setting, but Envoy takes the key from the route: use
        the first backend (by the route's order) whose policy hashes."""
        for name in clusters:
            policy = self.backend_policies.get(name)
            lb = policy.load_balancer if policy is not None else None
            if lb is None or not lb.algorithm.consistent or lb.consistent_hash is None:
                continue
            h = lb.consistent_hash
            hp = route_components_pb2.RouteAction.HashPolicy()
            if h.header is not None:
                hp.header.header_name = h.header
            elif h.cookie is not None:
                hp.cookie.name = h.cookie.name
                if h.cookie.ttl is not None:
                    hp.cookie.ttl.CopyFrom(duration(h.cookie.ttl))
                if h.cookie.path is not None:
                    hp.cookie.path = h.cookie.path
            else:
                hp.connection_properties.source_ip = True
            action.hash_policy.append(hp)
            return

    # -- whole configuration ----------------------------------------------------------------------

    def entries(self) -> list[_Entry]:
        out: list[_Entry] = []
        for route in self.inputs.routes:
            if isinstance(route, HTTPRoute):
                for ri, rule in enumerate(route.rules):
                    for mi, m in enumerate(rule.matches):
                        rm = http_route_match(m)
                        out.append(
                            _Entry(
                                key=http_precedence(m, route, ri, mi),
                                route=self.entry(
                                    route=route,
                                    rule_index=ri,
                                    match_index=mi,
                                    match=rm,
                                    http_match=m,
                                    rule=rule,
                                ),
                                owner=route,
                                field=f"spec.rules[{ri}].matches[{mi}]",
                            )
                        )
            else:
                for ri, grule in enumerate(route.rules):
                    for mi, gm in enumerate(grule.matches or (None,)):
                        out.append(
                            _Entry(
                                key=grpc_precedence(gm, route, ri, mi),
                                route=self.entry(
                                    route=route,
                                    rule_index=ri,
                                    match_index=mi,
                                    match=grpc_route_match(gm),
                                    http_match=None,
                                    rule=grule,
                                ),
                                owner=route,
                                field=f"spec.rules[{ri}].matches[{mi}]"
                                if gm is not None
                                else f"spec.rules[{ri}]",
                            )
                        )
        out.sort(key=lambda e: e.key)
        return out

    def default_route(self) -> route_components_pb2.Route:
        name = naming.cluster(self.inputs.service.namespace, self.inputs.service.name, self.inputs.port.port)
        out = route_components_pb2.Route(name=naming.DEFAULT_ROUTE)
        out.match.prefix = "/"
        out.route.cluster = name
        self.timeouts_and_retries(out.route, None, None, None, grpc=False)
        self.hash_policy(out.route, [name])
        return out

    def routes(self) -> list[route_components_pb2.Route]:
        if not self.inputs.routes:
            return [self.default_route()]
        entries = self.entries()
        seen: dict[bytes, _Entry] = {}
        kept: list[route_components_pb2.Route] = []
        for e in entries:
            match_bytes = e.route.match.SerializeToString(deterministic=True)
            winner = seen.get(match_bytes)
            if winner is not None:
                if winner.owner.ref != e.owner.ref:
                    self.report(
                        Severity.WARNING,
                        Reason.CONFLICT,
                        e.owner,
                        e.field,
                        f"the same match in {winner.owner.ref} {winner.field} takes precedence "
                        f"(older or first by name); this one never applies to "
                        f"{self.inputs.service.ref} port {self.inputs.port.port}",
                    )
                continue
            seen[match_bytes] = e
            kept.append(e.route)
        not_found = route_components_pb2.Route(name=naming.NOT_FOUND_ROUTE)
        not_found.match.prefix = "/"
        not_found.direct_response.status = 404
        kept.append(not_found)
        return kept


def _header_options(
    headers: tuple[tuple[str, str], ...], action: base_pb2.HeaderValueOption.HeaderAppendAction
) -> list[base_pb2.HeaderValueOption]:
    return [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v), append_action=action)
        for k, v in headers
    ]


def _modify_headers(
    target: route_components_pb2.Route | route_components_pb2.WeightedCluster.ClusterWeight,
    f: HeaderModifierFilter,
) -> None:
    options = _header_options(tuple((h.name.lower(), h.value) for h in f.set), _OVERWRITE)
    options += _header_options(tuple((h.name.lower(), h.value) for h in f.add), _APPEND)
    removes = [name.lower() for name in f.remove]
    if f.type.value == "RequestHeaderModifier":
        target.request_headers_to_add.extend(options)
        target.request_headers_to_remove.extend(removes)
    else:
        target.response_headers_to_add.extend(options)
        target.response_headers_to_remove.extend(removes)


def _prefix_rewrite(
    modifier: PathModifier, match: HTTPRouteMatch | None
) -> regex_pb2.RegexMatchAndSubstitute:
    """ReplacePrefixMatch as a regex on the front of the path, so the Gateway API's segment semantics hold:
    prefix /foo with / gives /foo/bar -> /bar and /foo -> /; with /xyz, /foo/bar -> /xyz/bar."""
    prefix = "/"
    if match is not None and match.path.type is PathMatchType.PATH_PREFIX:
        prefix = normalized_prefix(match.path.value)
    replacement = modifier.value.rstrip("/")
    if prefix == "/":
        return regex_pb2.RegexMatchAndSubstitute(
            pattern=regex_pb2.RegexMatcher(regex="^/"), substitution=replacement + "/"
        )
    if not replacement:
        return regex_pb2.RegexMatchAndSubstitute(
            pattern=regex_pb2.RegexMatcher(regex=f"^{re.escape(prefix)}/*"), substitution="/"
        )
    return regex_pb2.RegexMatchAndSubstitute(
        pattern=regex_pb2.RegexMatcher(regex=f"^{re.escape(prefix)}"), substitution=replacement
    )


def _redirect(f: RequestRedirectFilter, match: HTTPRouteMatch | None) -> route_components_pb2.RedirectAction:
    out = route_components_pb2.RedirectAction(response_code=_REDIRECT_CODES.get(f.status_code, 1))
    if f.scheme is not None:
        out.scheme_redirect = f.scheme
    if f.hostname is not None:
        out.host_redirect = f.hostname
    if f.port is not None:
        out.port_redirect = f.port
    if f.path is not None:
        if f.path.type is PathModifierType.REPLACE_FULL_PATH:
            out.path_redirect = f.path.value
        else:
            out.regex_rewrite.CopyFrom(_prefix_rewrite(f.path, match))
    return out


def _rewrite(
    action: route_components_pb2.RouteAction, f: URLRewriteFilter, match: HTTPRouteMatch | None
) -> None:
    if f.hostname is not None:
        action.host_rewrite_literal = f.hostname
    if f.path is None:
        return
    if f.path.type is PathModifierType.REPLACE_FULL_PATH:
        action.regex_rewrite.CopyFrom(
            regex_pb2.RegexMatchAndSubstitute(
                pattern=regex_pb2.RegexMatcher(regex="^/.*$"), substitution=f.path.value
            )
        )
    else:
        action.regex_rewrite.CopyFrom(_prefix_rewrite(f.path, match))


def _retry_policy(
    retry: RouteRetry | None, default: RetryPolicy | None, *, grpc: bool
) -> route_components_pb2.RetryPolicy | None:
    """The route's own retry settings, else the TrafficPolicy's, else none."""
    if retry is not None:
        out = route_components_pb2.RetryPolicy()
        conditions = [_DEFAULT_GRPC_RETRY_ON if grpc else "connect-failure,refused-stream"]
        if retry.codes:
            conditions.append("retriable-status-codes")
            out.retriable_status_codes.extend(retry.codes)
        elif not grpc:
            conditions.append("5xx")
        out.retry_on = ",".join(conditions)
        if retry.attempts is not None:
            out.num_retries.value = retry.attempts
        if retry.backoff is not None:
            out.retry_back_off.base_interval.CopyFrom(duration(retry.backoff))
        return out
    if default is not None:
        out = route_components_pb2.RetryPolicy()
        out.num_retries.value = default.attempts
        if default.retry_on:
            out.retry_on = ",".join(r.value for r in default.retry_on)
        else:
            out.retry_on = _DEFAULT_GRPC_RETRY_ON if grpc else _DEFAULT_RETRY_ON
        if default.per_try_timeout is not None:
            out.per_try_timeout.CopyFrom(duration(default.per_try_timeout))
        return out
    return None


def fault_config(fault: FaultInjection) -> fault_pb2.HTTPFault:
    out = fault_pb2.HTTPFault()
    if fault.delay is not None:
        out.delay.CopyFrom(
            common_fault_pb2.FaultDelay(
                fixed_delay=duration(fault.delay.fixed_delay), percentage=per_million(fault.delay.percentage)
            )
        )
    if fault.abort is not None:
        out.abort.CopyFrom(
            fault_pb2.FaultAbort(
                http_status=fault.abort.http_status, percentage=per_million(fault.abort.percentage)
            )
        )
    return out


def build_route_config(inputs: RouteInputs) -> tuple[route_pb2.RouteConfiguration, tuple[Diagnostic, ...]]:
    builder = _Builder(
        inputs=inputs, backends=dict(inputs.backends), backend_policies=dict(inputs.backend_policies)
    )
    host = route_components_pb2.VirtualHost(name=naming.DEFAULT_VIRTUAL_HOST, domains=["*"])
    host.routes.extend(builder.routes())
    if inputs.policy.fault is not None:
        host.typed_per_filter_config[naming.FAULT_FILTER].CopyFrom(pack(fault_config(inputs.policy.fault)))
    config = route_pb2.RouteConfiguration(name=inputs.name, virtual_hosts=[host])
    return config, tuple(builder.diagnostics)
