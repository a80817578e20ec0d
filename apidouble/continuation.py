"""Continue tokens of paginated lists: the snapshot's resourceVersion and the last key returned."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from apidouble.errors import bad_request


@dataclass(frozen=True, slots=True, kw_only=True)
class Continuation:
    rv: int
    after: tuple[str, str]  # (namespace, name) of the last item of the previous page

    def encode(self) -> str:
        body = {"v": "meta.k8s.io/v1", "rv": self.rv, "start": f"{self.after[0]}/{self.after[1]}"}
        return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Continuation:
        try:
            padded = token + "=" * (-len(token) % 4)
            body = json.loads(base64.urlsafe_b64decode(padded.encode()))
            namespace, _, name = str(body["start"]).partition("/")
            return cls(rv=int(body["rv"]), after=(namespace, name))
        except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise bad_request(f"continue key is not valid: {exc}") from exc
