"""The kube source's exceptions: everything kubernetes-asyncio and aiohttp raise is mapped to these."""

from __future__ import annotations


class KubeSourceError(Exception):
    """Root exception of the Kubernetes source."""


class KubeApiError(KubeSourceError):
    """The API server answered with an error Status (or the connection to it failed: status 0)."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class ResourceExpiredError(KubeApiError):
    """410 Gone/Expired: the resourceVersion (or continue token) is too old; the caller must relist."""
