"""`SecretCAStore`: the CA's signing material in a Kubernetes Secret, so every replica shares one root.

The Secret (type Opaque) holds, base64-encoded as Secrets do:

    ca.crt            the signing certificate (PEM)
    ca.key            its private key (PKCS#8 PEM)
    ca-chain.crt      its issuers up to the root, when it is not itself the root (PEM, may be empty)
    trust-bundle.crt  every trusted root, kept through a root rotation (PEM, may be empty)

Writes are optimistic: the first save creates the Secret, later ones update it with the resourceVersion
last read. Either one losing a race (409) raises `CAStoreConflictError`, and the caller re-loads and uses
the winner's material, so two replicas starting together end up with one root.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, Final

from controlplane.ca.errors import CAStoreConflictError, CAStoreError
from controlplane.ca.store import CAMaterial
from controlplane.sources.kube.client import KubeApi
from controlplane.sources.kube.errors import KubeApiError
from controlplane.sources.kube.resources import ResourceType

log = logging.getLogger(__name__)

SECRETS: Final = ResourceType(group="", version="v1", plural="secrets", kind="Secret")

CERTIFICATE_KEY: Final = "ca.crt"
PRIVATE_KEY_KEY: Final = "ca.key"
CHAIN_KEY: Final = "ca-chain.crt"
TRUST_BUNDLE_KEY: Final = "trust-bundle.crt"


class SecretCAStore:
    """A CAStore on the Secret `namespace/name`."""

    def __init__(self, api: KubeApi, namespace: str, name: str) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        # The resourceVersion of the Secret as last read (None: we saw none), the precondition of a save.
        self._resource_version: str | None = None

    def __repr__(self) -> str:
        return f"SecretCAStore({self._namespace}/{self._name})"

    async def load(self) -> CAMaterial | None:
        try:
            secret = await self._api.get(SECRETS, self._namespace, self._name)
        except KubeApiError as exc:
            if exc.status == 404:
                self._resource_version = None
                return None
            raise CAStoreError(f"cannot read the CA Secret {self._namespace}/{self._name}: {exc}") from exc
        self._resource_version = str((secret.get("metadata") or {}).get("resourceVersion") or "") or None
        return self._material(secret)

    async def save(self, material: CAMaterial) -> None:
        body = self._secret(material)
        try:
            if self._resource_version is None:
                created = await self._api.request("POST", SECRETS.collection_path(self._namespace), body=body)
                stored = created
            else:
                body["metadata"]["resourceVersion"] = self._resource_version
                stored = await self._api.request(
                    "PUT", SECRETS.item_path(self._namespace, self._name), body=body
                )
        except KubeApiError as exc:
            if exc.status == 409:
                raise CAStoreConflictError(
                    f"the CA Secret {self._namespace}/{self._name} was written by someone else ({exc.reason})"
                ) from exc
            raise CAStoreError(f"cannot write the CA Secret {self._namespace}/{self._name}: {exc}") from exc
        self._resource_version = str((stored.get("metadata") or {}).get("resourceVersion") or "") or None
        log.info("stored the CA in Secret %s/%s", self._namespace, self._name)

    def _secret(self, material: CAMaterial) -> dict[str, Any]:
        data = {
            CERTIFICATE_KEY: material.certificate_pem,
            PRIVATE_KEY_KEY: material.key_pem,
            CHAIN_KEY: material.chain_pem,
            TRUST_BUNDLE_KEY: material.trust_bundle_pem,
        }
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self._name,
                "namespace": self._namespace,
                "labels": {"app.kubernetes.io/part-of": "nodemesh"},
            },
            "type": "Opaque",
            "data": {key: base64.b64encode(value).decode("ascii") for key, value in data.items()},
        }

    def _material(self, secret: dict[str, Any]) -> CAMaterial:
        where = f"the CA Secret {self._namespace}/{self._name}"
        data = secret.get("data") or {}
        if not isinstance(data, dict):
            raise CAStoreError(f"{where} has no data")
        decoded: dict[str, bytes] = {}
        for key in (CERTIFICATE_KEY, PRIVATE_KEY_KEY, CHAIN_KEY, TRUST_BUNDLE_KEY):
            try:
                decoded[key] = base64.b64decode(str(data.get(key) or ""), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise CAStoreError(f"{where}: {key} is not base64") from exc
        if not decoded[CERTIFICATE_KEY].strip() or not decoded[PRIVATE_KEY_KEY].strip():
            raise CAStoreError(f"{where} must hold {CERTIFICATE_KEY} and {PRIVATE_KEY_KEY}")
        return CAMaterial(
            certificate_pem=decoded[CERTIFICATE_KEY],
            key_pem=decoded[PRIVATE_KEY_KEY],
            chain_pem=decoded[CHAIN_KEY],
            trust_bundle_pem=decoded[TRUST_BUNDLE_KEY],
        )
