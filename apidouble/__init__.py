"""An in-memory Kubernetes API server for tests, `kubectl`, and the demo's embedded cluster API."""

from apidouble.errors import ApiError
from apidouble.operations import TokenUser
from apidouble.server import ApiServerDouble

__all__ = ["ApiError", "ApiServerDouble", "TokenUser"]
