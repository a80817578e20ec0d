"""The status package's exceptions: what a `StatusPatcher` raises, mapped from its transport's errors."""

from __future__ import annotations


class StatusError(Exception):
    """Root exception of status write-back."""


class StatusWriteError(StatusError):
    """A status write failed for a reason worth retrying later (connection, server error)."""


class StatusConflictError(StatusWriteError):
    """409: the object changed since the version the write was based on; retry once the cache caught up."""


class ObjectGoneError(StatusError):
    """404: the object was deleted; nothing to write."""
