"""The config dump behind /debug/config: Envoy JSON per node and type, key material never rendered."""

from __future__ import annotations

import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from google.protobuf import any_pb2, json_format

from controlplane.xds import typeurls as t
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.configdump import REDACTED, ConfigDump, ConfigQueryError, redact, resolve_type
from tests.xds import builders as b


def key_and_cert(uri: str = "spiffe://cluster.local/ns/a/sa/b") -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test")]))
        .public_key(key.public_key())
        .serial_number(0x1234ABCD)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=24))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def tls_secret(name: str, key_pem: bytes, cert_pem: bytes) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=name,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=cert_pem),
            private_key=base_pb2.DataSource(inline_bytes=key_pem),
            password=base_pb2.DataSource(inline_string="hunter2"),
        ),
    )


def tls_listener(key_pem: bytes, cert_pem: bytes) -> listener_pb2.Listener:
    """A listener whose filter chain inlines a certificate and key in its transport socket's Any."""
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificates=[
                common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(inline_bytes=cert_pem),
                    private_key=base_pb2.DataSource(inline_bytes=key_pem),
                )
            ]
        ),
        session_ticket_keys=common_pb2.TlsSessionTicketKeys(
            keys=[base_pb2.DataSource(inline_bytes=b"k" * 80)]
        ),
    )
    packed = any_pb2.Any()
    packed.Pack(context)
    listener = b.listener("tls", "r")
    listener.filter_chains[0].transport_socket.name = "envoy.transport_sockets.tls"
    listener.filter_chains[0].transport_socket.typed_config.CopyFrom(packed)
    return listener


def test_secret_keys_are_redacted_and_the_certificate_kept() -> None:
    key_pem, cert_pem = key_and_cert()
    cache = SnapshotCache()
    cache.set_snapshot(
        "node-a", b.snapshot(cache.pool, tls_secret("spiffe://x/ns/a/sa/b", key_pem, cert_pem))
    )
    document = ConfigDump(snapshots=cache).query(node="node-a", type_name="secrets")
    text = json.dumps(document)
    assert "PRIVATE KEY" not in text
    assert key_pem.decode() not in text and "hunter2" not in text
    [entry] = document["resources"]
    tls = entry["resource"]["tls_certificate"]
    assert tls["private_key"] == {"inline_string": REDACTED}
    assert tls["password"] == {"inline_string": REDACTED}
    # The certificate is intact, and the whole resource is still valid Envoy JSON.
    parsed = json_format.ParseDict(entry["resource"], any_pb2.Any())
    secret = secret_pb2.Secret()
    parsed.Unpack(secret)
    assert secret.tls_certificate.certificate_chain.inline_bytes == cert_pem
    # The cache's own copy is untouched: redaction works on a copy.
    held = cache.get("node-a")
    assert held is not None
    original = held.of_type(t.SECRET)["spiffe://x/ns/a/sa/b"].message()
    assert original.tls_certificate.private_key.inline_bytes == key_pem  # type: ignore[attr-defined]


def test_keys_inlined_in_a_listener_any_are_redacted() -> None:
    key_pem, cert_pem = key_and_cert()
    cache = SnapshotCache()
    messages = [tls_listener(key_pem, cert_pem), b.route("r", "c"), b.eds_cluster("c"), b.endpoints("c", 1)]
    cache.set_snapshot("node-a", b.snapshot(cache.pool, *messages))
    document = ConfigDump(snapshots=cache).query(node="node-a", type_name="listeners")
    text = json.dumps(document)
    assert "PRIVATE KEY" not in text
    socket = document["resources"][0]["resource"]["filter_chains"][0]["transport_socket"]["typed_config"]
    assert socket["@type"].endswith("DownstreamTlsContext")
    assert socket["common_tls_context"]["tls_certificates"][0]["private_key"] == {"inline_string": REDACTED}
    assert socket["session_ticket_keys"]["keys"] == [{"inline_string": REDACTED}]
    assert "inline_bytes" in socket["common_tls_context"]["tls_certificates"][0]["certificate_chain"]


def test_redact_leaves_messages_without_keys_alone() -> None:
    cluster = b.eds_cluster("c")
    before = cluster.SerializeToString(deterministic=True)
    redact(cluster)
    assert cluster.SerializeToString(deterministic=True) == before


def test_query_renders_envoy_json_of_what_the_cache_holds() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("node-a", b.mesh(cache.pool, {"c1": (1,), "c2": (2, 3)}))
    cache.set_default(b.mesh(cache.pool, {"d": (4,)}))
    dump = ConfigDump(snapshots=cache)
    document = dump.query(node="node-a", type_name="clusters")
    held = cache.get("node-a")
    assert held is not None
    assert document["snapshot"] == "node"
    assert document["version"] == held.version
    assert document["type_url"] == t.CLUSTER
    assert [e["name"] for e in document["resources"]] == ["c1", "c2"]
    for entry in document["resources"]:
        resource = held.of_type(t.CLUSTER)[entry["name"]]
        assert entry["version"] == resource.version
        assert entry["resource"] == json_format.MessageToDict(
            resource.to_any(), preserving_proto_field_name=True
        )
    # A node without its own snapshot gets the default, and says so.
    other = dump.query(node="node-z", type_name="cds")
    assert other["snapshot"] == "default"
    assert [e["name"] for e in other["resources"]] == ["d"]


def test_query_errors_say_what_is_wrong() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("node-a", b.mesh(cache.pool, {"c1": (1,)}))
    dump = ConfigDump(snapshots=cache)
    with pytest.raises(ConfigQueryError, match="nodes with config: node-a") as missing:
        dump.query(node="node-b", type_name="clusters")
    assert missing.value.status == 404
    with pytest.raises(ConfigQueryError, match="unknown type 'bogus'") as bad_type:
        dump.query(node="node-a", type_name="bogus")
    assert bad_type.value.status == 400
    with pytest.raises(ConfigQueryError, match="missing node") as no_node:
        dump.query(node="", type_name="clusters")
    assert no_node.value.status == 400


@pytest.mark.parametrize(
    ("text", "type_url"),
    [("listeners", t.LISTENER), ("rds", t.ROUTE), (t.ENDPOINT, t.ENDPOINT), ("secrets", t.SECRET)],
)
def test_resolve_type_accepts_names_short_names_and_urls(text: str, type_url: str) -> None:
    assert resolve_type(text) == type_url
