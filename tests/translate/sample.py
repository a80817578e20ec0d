"""A sample mesh for whole-pipeline tests: several namespaces, HTTP/gRPC/TCP, splits, header routes,
rewrites, redirects, mirrors, faults, timeouts, retries, consumer routes, and a bad route."""

from __future__ import annotations

from controlplane.model.policy import (
    ConnectionPool,
    ConsistentHash,
    FaultAbort,
    FaultDelay,
    FaultInjection,
    LoadBalancer,
    LoadBalancerAlgorithm,
    OutlierDetection,
    RetryOn,
    RetryPolicy,
)
from controlplane.model.routes import (
    BackendObjectRef,
    FilterType,
    GRPCMethodMatch,
    GRPCRouteMatch,
    HeaderMatch,
    HeaderModifierFilter,
    HTTPHeader,
    HTTPMethod,
    PathModifier,
    PathModifierType,
    RequestMirrorFilter,
    RequestRedirectFilter,
    RouteRetry,
    RouteTimeouts,
    URLRewriteFilter,
)
from controlplane.model.snapshot import MeshSnapshot
from tests.translate.builders import (
    backend,
    endpoint,
    endpoint_slice,
    exact,
    grpc_backend,
    grpc_port,
    grpc_route,
    grpc_rule,
    http_port,
    http_route,
    mesh,
    namespace,
    node,
    parent,
    pod,
    policy,
    prefix,
    regex,
    rule,
    seconds,
    service,
    tcp_port,
)


def sample_mesh() -> MeshSnapshot:
    return mesh(
        namespace("shop"),
        namespace("web"),
        namespace("db"),
        namespace("legacy", enrolled=False),
        node("node-a", "10.0.0.1", zone="z1"),
        node("node-b", "10.0.0.2", zone="z2"),
        pod("web", "frontend-1", "node-a", "10.1.0.10", sa="frontend"),
        pod("web", "frontend-2", "node-b", "10.1.0.11", sa="frontend"),
        pod("shop", "reviews-v1-1", "node-a", "10.1.0.20", sa="reviews"),
        pod("shop", "reviews-v2-1", "node-b", "10.1.0.21", sa="reviews"),
        pod("shop", "ratings-1", "node-b", "10.1.0.30", sa="ratings"),
        pod("db", "postgres-0", "node-a", "10.1.0.40", sa="postgres"),
        pod("legacy", "old-1", "node-a", "10.1.0.50"),
        service("shop", "reviews", "10.96.0.10", http_port(80, target="http")),
        service("shop", "reviews-v1", "10.96.0.11", http_port(80, target=8080)),
        service("shop", "reviews-v2", "10.96.0.12", http_port(80, target=8080)),
        service("shop", "ratings", "10.96.0.20", grpc_port(9090)),
        service("db", "postgres", "10.96.0.40", tcp_port(5432)),
        service("web", "frontend", "10.96.0.50", http_port(80), tcp_port(9000, name="metrics")),
        endpoint_slice("shop", "reviews", endpoint("10.1.0.20", zone="z1"), endpoint("10.1.0.21", zone="z2")),
        endpoint_slice("shop", "reviews-v1", endpoint("10.1.0.20", zone="z1")),
        endpoint_slice("shop", "reviews-v2", endpoint("10.1.0.21", zone="z2")),
        endpoint_slice("shop", "ratings", endpoint("10.1.0.30"), ports=(("grpc", 9090),)),
        endpoint_slice("db", "postgres", endpoint("10.1.0.40"), ports=(("tcp", 5432),)),
        endpoint_slice(
            "web",
            "frontend",
            endpoint("10.1.0.10"),
            endpoint("10.1.0.11"),
            ports=(("http", 80), ("metrics", 9000)),
        ),
        http_route(
            "shop",
            "reviews-split",
            parent("shop", "reviews", 80),
            rule(
                backend("shop", "reviews-v2"),
                matches=(prefix("/", headers=(HeaderMatch(name="x-canary", value="true"),)),),
            ),
            rule(
                backend("shop", "reviews-v1", weight=90),
                backend("shop", "reviews-v2", weight=10),
                matches=(prefix("/api"),),
                timeouts=RouteTimeouts(request=seconds(5), backend_request=seconds(1)),
                retry=RouteRetry(attempts=3, codes=(502, 503), backoff=seconds(0.1)),
            ),
            rule(
                backend("shop", "reviews-v1"),
                matches=(prefix("/old/"),),
                filters=(
                    URLRewriteFilter(
                        hostname="reviews.internal",
                        path=PathModifier(type=PathModifierType.REPLACE_PREFIX_MATCH, value="/new"),
                    ),
                    HeaderModifierFilter(
                        type=FilterType.REQUEST_HEADER_MODIFIER,
                        set=(HTTPHeader(name="x-from", value="mesh"),),
                        remove=("x-debug",),
                    ),
                    RequestMirrorFilter(
                        backend=BackendObjectRef(namespace="shop", name="reviews-v2", port=80),
                        numerator=5,
                        denominator=100,
                    ),
                ),
            ),
            rule(
                matches=(exact("/legacy"),),
                filters=(
                    RequestRedirectFilter(
                        scheme="https",
                        hostname="reviews.example.com",
                        port=8443,
                        path=PathModifier(type=PathModifierType.REPLACE_FULL_PATH, value="/v2/legacy"),
                        status_code=301,
                    ),
                ),
            ),
            rule(
                backend("shop", "reviews-v1"),
                matches=(regex("/items/[0-9]+", method=HTTPMethod.GET),),
            ),
            rule(backend("shop", "missing"), backend("shop", "reviews-v1"), matches=(prefix("/broken"),)),
            created="2024-01-01T00:00:00Z",
        ),
        # web's own view of reviews: everything to v1, with a response header.
        http_route(
            "web",
            "reviews-for-web",
            parent("shop", "reviews"),
            rule(
                backend(
                    "shop",
                    "reviews-v1",
                    filters=(
                        HeaderModifierFilter(
                            type=FilterType.RESPONSE_HEADER_MODIFIER,
                            add=(HTTPHeader(name="x-view", value="web"),),
                        ),
                    ),
                )
            ),
        ),
        grpc_route(
            "shop",
            "ratings",
            parent("shop", "ratings"),
            grpc_rule(
                grpc_backend("shop", "ratings"),
                matches=(GRPCRouteMatch(method=GRPCMethodMatch(service="shop.Ratings", method="Get")),),
            ),
            grpc_rule(grpc_backend("shop", "ratings")),
        ),
        policy(
            "shop",
            "reviews",
            "reviews",
            timeout=seconds(10),
            retries=RetryPolicy(attempts=2, per_try_timeout=seconds(2), retry_on=(RetryOn.FIVE_XX,)),
            fault=FaultInjection(
                delay=FaultDelay(fixed_delay=seconds(0.5), percentage=10),
                abort=FaultAbort(http_status=503, percentage=0.5),
            ),
        ),
        policy(
            "shop",
            "reviews-v1",
            "reviews-v1",
            load_balancer=LoadBalancer(
                algorithm=LoadBalancerAlgorithm.RING_HASH,
                consistent_hash=ConsistentHash(header="x-user", minimum_ring_size=1024),
            ),
            connection_pool=ConnectionPool(
                max_connections=100, max_requests=1000, connect_timeout=seconds(2)
            ),
            outlier_detection=OutlierDetection(
                consecutive_5xx=5, interval=seconds(10), base_ejection_time=seconds(30)
            ),
        ),
        policy(
            "shop",
            "ratings",
            "ratings",
            load_balancer=LoadBalancer(algorithm=LoadBalancerAlgorithm.LEAST_REQUEST),
        ),
    )
