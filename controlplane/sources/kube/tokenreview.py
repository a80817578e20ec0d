"""`TokenReviewAuthenticator`: node authorization in a cluster, by the API server's TokenReview.

A node agent presents its projected service-account token (audience `nodemesh-ca`, bound to its pod). The
API server says whose it is; we accept only the node agent's service account, and take the node from the
token's bound-object claims (`authentication.kubernetes.io/node-name`, Kubernetes >= 1.30), so an agent
can only ever speak for the node its pod runs on.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from controlplane.ca.authorization import AuthenticationError, NodeIdentity, RefusalReason
from controlplane.ca.clock import Clock
from controlplane.ca.errors import AuthenticatorUnavailableError
from controlplane.sources.kube.client import KubeApi
from controlplane.sources.kube.errors import KubeApiError
from controlplane.sources.kube.resources import ResourceType

log = logging.getLogger(__name__)

TOKEN_REVIEWS: Final = ResourceType(
    group="authentication.k8s.io", version="v1", plural="tokenreviews", kind="TokenReview", namespaced=False
)
DEFAULT_AUDIENCE: Final = "nodemesh-ca"
DEFAULT_NODE_SERVICE_ACCOUNT: Final = "system:serviceaccount:nodemesh-system:nodemesh-node"
NODE_NAME_EXTRA: Final = "authentication.kubernetes.io/node-name"
# Long enough to absorb one agent's burst of CSRs, short enough that a deleted pod's token stops working soon.
DEFAULT_CACHE_TTL: Final = timedelta(seconds=5)
_CACHE_SIZE: Final = 1024


def node_from_extra(user: Mapping[str, Any]) -> str | None:
    """The node a bound service-account token's pod runs on, from the review's `status.user.extra`."""
    extra = user.get("extra")
    if not isinstance(extra, Mapping):
        return None
    values = extra.get(NODE_NAME_EXTRA)
    if not isinstance(values, list) or len(values) != 1 or not isinstance(values[0], str):
        return None
    return values[0] or None


class TokenReviewAuthenticator:
    """A NodeAuthenticator asking the API server (`POST authentication.k8s.io/v1 tokenreviews`)."""

    def __init__(
        self,
        api: KubeApi,
        *,
        clock: Clock,
        audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,),
        service_account: str = DEFAULT_NODE_SERVICE_ACCOUNT,
        node_of: Callable[[Mapping[str, Any]], str | None] = node_from_extra,
        cache_ttl: timedelta = DEFAULT_CACHE_TTL,
    ) -> None:
        if not audiences:
            raise ValueError("a TokenReview authenticator needs an audience, else any account token passes")
        self._api = api
        self._clock = clock
        self._audiences = audiences
        self._service_account = service_account
        self._node_of = node_of
        self._cache_ttl = cache_ttl
        # sha256(token) -> (identity, valid until); positive answers only, so a refusal is re-asked.
        self._cache: OrderedDict[bytes, tuple[NodeIdentity, datetime]] = OrderedDict()

    async def authenticate(self, token: str) -> NodeIdentity:
        if not token:
            raise AuthenticationError(RefusalReason.MISSING_TOKEN, "no bearer token")
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock.now()
        cached = self._cache.get(key)
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._cache[key]
        identity = await self._review(token)
        self._cache[key] = (identity, self._clock.now() + self._cache_ttl)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return identity

    async def _review(self, token: str) -> NodeIdentity:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": list(self._audiences)},
        }
        try:
            review = await self._api.request("POST", TOKEN_REVIEWS.collection_path(), body=body)
        except KubeApiError as exc:
            # Not the node's fault (the API server is down, or we lack the RBAC): the agent should retry.
            raise AuthenticatorUnavailableError(f"TokenReview failed: {exc}") from exc
        status = review.get("status")
        if not isinstance(status, dict) or status.get("authenticated") is not True:
            error = status.get("error") if isinstance(status, dict) else None
            message = f"token not authenticated: {error or 'unknown token'}"
            raise AuthenticationError(RefusalReason.INVALID_TOKEN, message)
        granted = status.get("audiences")
        # The API server answers with the audiences the token is valid for; an empty answer from an old
        # server means it did not check them, which must not pass for `nodemesh-ca`.
        if not isinstance(granted, list) or not set(granted) & set(self._audiences):
            raise AuthenticationError(
                RefusalReason.INVALID_TOKEN, f"token is not for the audience {', '.join(self._audiences)}"
            )
        user = status.get("user")
        if not isinstance(user, dict):
            raise AuthenticationError(RefusalReason.INVALID_TOKEN, "TokenReview named no user")
        username = user.get("username")
        if username != self._service_account:
            raise AuthenticationError(
                RefusalReason.INVALID_TOKEN, f"token of {username!r}, not of the node agent's service account"
            )
        node = self._node_of(user)
        if node is None:
            # A legacy or unbound token says nothing about where it runs: it could speak for any node.
            raise AuthenticationError(RefusalReason.INVALID_TOKEN, "token is not bound to a node")
        return NodeIdentity(node=node)
