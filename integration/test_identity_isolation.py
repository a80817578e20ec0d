"""Identity isolation on the real data path: one workload's traffic never leaves with another workload's
identity, whatever it connects to (issue 4).

Two nodes. node1: `bank/alice` (service account alice) and `bank/mallory` (service account mallory), both
meshed, and `bank/vault` (TCP echo, Service `vault`). node2: `bank/server` (HTTP echo, Service `server`)
and `bank/store` (TCP echo, Service `store`). Only alice may call vault and store (AuthorizationPolicy).
`bank` is STRICT: plaintext that did not come through a node Envoy is refused.
From mallory's pod we try everything reachable: the Service VIPs, the pods' IPs, node1's Envoy ports
(15001, 15008, admin), node2's 15008 with no certificate and with a self-signed one naming alice, and
alice's source IP. The server must never see alice's SPIFFE ID or alice's certificate (XFCC URI / Hash)
for mallory's traffic; alice's own calls carry alice's identity (the positive control).

Pod IPs (no Service) are tunnelled over HBONE as the caller too, on either node: a finding of an earlier
version, where a pod IP on the caller's own node passed through in plaintext from the node IP (which the
STRICT hook accepts as an Envoy delivery), so the target saw whatever XFCC the caller wrote and no RBAC ran.
The spoofed source IP does not get through: the node routes alice's IP back to alice's interface, so the
handshake never completes.

Probes run in the pods as `python -m integration.test_identity_isolation '<json>'` (see `probe`): plain
sockets, so every outcome (refused, reset, timeout, TLS alert) is reported, never hidden by a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import json
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controlplane.ca.identity import SpiffeId
from controlplane.translate.hbone import server_name
from integration.mesh import MeshHarness, MeshPod, Port
from integration.topology_fixtures import skip_unless_mesh_can_run

NS = "bank"
TD = "cluster.local"
ALICE = SpiffeId.for_workload(TD, NS, "alice")
MALLORY = SpiffeId.for_workload(TD, NS, "mallory")
SERVER = SpiffeId.for_workload(TD, NS, "server")
OUTBOUND_PORT = 15001
HBONE_PORT = 15008
PROBE_SECONDS = 2.0
LOCKED = "locked"  # the label of the TCP echoes only alice may call
IP_FREEBIND = 15  # linux/in.h; not in the socket module

pytestmark = [pytest.mark.privileged, pytest.mark.envoy, pytest.mark.asyncio(loop_scope="module")]


# -- the probe (runs inside a pod) ------------------------------------------------------------------------


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def _effective_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return -1


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """One connection attempt as `spec` says; what happened, as JSON-able facts.

    spec: host, port; optional source (bind address), freebind, send (text), tls {sni, cert, key},
    only_bind (bind and stop)."""
    out: dict[str, Any] = {"stage": "socket", "cap_eff": _effective_capabilities()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(float(spec.get("timeout", PROBE_SECONDS)))
    try:
        if spec.get("freebind"):
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        if spec.get("source"):
            out["stage"] = "bind"
            sock.bind((spec["source"], 0))
            if spec.get("only_bind"):
                out["outcome"] = "bound"
                return out
        out["stage"] = "connect"
        sock.connect((spec["host"], int(spec["port"])))
        out["local"] = sock.getsockname()[0]
        stream: socket.socket = sock
        tls = spec.get("tls")
        if tls is not None:
            out["stage"] = "handshake"
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # we look at the server's certificate ourselves
            context.set_alpn_protocols(["h2"])
            if tls.get("cert"):
                context.load_cert_chain(tls["cert"], tls["key"])
            stream = context.wrap_socket(sock, server_hostname=tls["sni"])
            der = stream.getpeercert(binary_form=True)
            out["server_cert"] = der.hex() if der else None
            # The HTTP/2 client preface: a server that accepted us answers with its SETTINGS frame.
            out["stage"] = "exchange"
            stream.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
        elif spec.get("send"):
            out["stage"] = "exchange"
            stream.sendall(str(spec["send"]).encode())
        data = b""
        with contextlib.suppress(TimeoutError):
            while len(data) < 65536:
                chunk = stream.recv(65536)
                if not chunk:
                    break
                data += chunk
                if not spec.get("read_all"):
                    break
        out["data"] = data.decode("latin-1")
        out["outcome"] = "data" if data else "closed"
    except ssl.SSLError as exc:
        out["outcome"] = "tls_error"
        out["error"] = f"{exc.reason or exc}"
    except TimeoutError:
        out["outcome"] = "timeout"
    except OSError as exc:
        out["outcome"] = "error"
        out["error"] = _errno_name(exc)
    finally:
        sock.close()
    return out


def _http_request(host: str, path: str = "/", headers: dict[str, str] | None = None) -> str:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return "\r\n".join(lines) + "\r\n\r\n"


def _http_json(result: dict[str, Any]) -> dict[str, Any] | None:
    """The echo server's JSON body when the probe got one (an HTTP response from a pod), else None."""
    if result.get("outcome") != "data":
        return None
    _, _, body = str(result["data"]).partition("\r\n\r\n")
    with contextlib.suppress(ValueError):
        value = json.loads(body)
        if isinstance(value, dict):
            return value
    return None


async def run_probe(mesh: MeshHarness, pod: MeshPod, spec: dict[str, Any], *, drop_caps: bool = False) -> Any:
    argv = [sys.executable, "-m", "integration.test_identity_isolation", json.dumps(spec)]
    if drop_caps:
        # An ordinary pod: no capabilities at all (so no NET_ADMIN, no NET_RAW).
        argv = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", *argv]
    timeout = float(spec.get("timeout", PROBE_SECONDS)) + 10
    result = await asyncio.to_thread(mesh.topology.run, pod.fabric, argv, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- the mesh ---------------------------------------------------------------------------------------------


def _xfcc(reply_headers: Mapping[str, Any]) -> dict[str, str]:
    """XFCC's key=value pairs (one element: the harness's node Envoy writes exactly one)."""
    value = str(reply_headers.get("x-forwarded-client-cert", ""))
    pairs = (part.partition("=") for part in value.split(";") if part)
    return {key: val.strip('"') for key, _, val in pairs}


def _assert_not_alice(headers: Mapping[str, Any], alice_hash: str, where: str) -> None:
    xfcc = _xfcc(headers)
    assert xfcc.get("URI") != str(ALICE), (where, headers)
    assert alice_hash not in str(headers.get("x-forwarded-client-cert", "")), (where, headers)


def _forged_xfcc(alice_hash: str) -> dict[str, str]:
    return {"X-Forwarded-Client-Cert": f"By={SERVER};Hash={alice_hash};URI={ALICE}"}


def _policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "nodemesh.io/v1alpha1",
        "kind": name,
        "metadata": {"name": name.lower(), "namespace": NS},
        "spec": spec,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MeshHarness]:
    skip_unless_mesh_can_run("setpriv")
    async with MeshHarness(workdir=tmp_path_factory.mktemp("isolation"), nodes=2) as harness:
        try:
            node1, node2 = harness.nodes
            await harness.enroll(NS)
            for name, node, kind, port in (
                ("alice", node1, "http", 8080),
                ("mallory", node1, "http", 8080),
                ("server", node2, "http", 8080),
                ("store", node2, "tcp", 9000),
                ("vault", node1, "tcp", 9000),
            ):
                labels = {"app": name, **({LOCKED: "yes"} if kind == "tcp" else {})}
                await harness.add_pod(
                    NS, name, node=node, labels=labels, service_account=name, kind=kind, ports=(port,)
                )
            for name in ("server", "alice"):
                # Declared HTTP, so the destination terminates the tunnel's stream and writes XFCC.
                await harness.add_service(NS, name, {"app": name}, (Port(name="http", port=80, target=8080),))
            for name in ("store", "vault"):
                await harness.add_service(NS, name, {"app": name}, (Port(name="tcp", port=9000),))
            harness.apply(_policy("PeerAuthentication", {"mtls": {"mode": "STRICT"}}))
            # The TCP echo cannot report who called: a policy that only alice passes makes it tell.
            harness.apply(
                _policy(
                    "AuthorizationPolicy",
                    {
                        "selector": {"matchLabels": {LOCKED: "yes"}},
                        "action": "ALLOW",
                        "rules": [{"from": [{"source": {"principals": [f"{TD}/ns/{NS}/sa/alice"]}}]}],
                    },
                )
            )
            await harness.wait_synced()
            yield harness
        except BaseException:
            print(harness.logs(80))
            raise


def pod(mesh: MeshHarness, name: str) -> MeshPod:
    return mesh.pods[f"{NS}/{name}"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def alice_hash(mesh: MeshHarness) -> str:
    """The positive control: alice's call through the Service carries alice's identity; her certificate's
    hash, as the server saw it."""
    reply = await mesh.call(pod(mesh, "alice"), mesh.service(NS, "server").url("/"))
    assert reply.status == 200 and reply.pod == f"{NS}/server", reply
    xfcc = _xfcc(reply.headers)
    assert xfcc.get("URI") == str(ALICE), reply.headers
    assert xfcc.get("By") == str(SERVER), reply.headers
    assert len(xfcc.get("Hash", "")) == 64, reply.headers
    return xfcc["Hash"]


def _self_signed(directory: Path, spiffe_id: SpiffeId) -> tuple[Path, Path]:
    """A certificate that claims `spiffe_id` but chains to nothing the mesh trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "forged")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(spiffe_id))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "forged.pem", directory / "forged.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _uri_sans(cert_hex: str) -> list[str]:
    cert = x509.load_der_x509_certificate(bytes.fromhex(cert_hex))
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )


def _refused_by_tls(result: dict[str, Any]) -> bool:
    """A 15008 that did not accept the client: a TLS alert, a reset or a close, never an HTTP/2 frame."""
    return result.get("outcome") in ("tls_error", "error", "closed")


# -- the tests --------------------------------------------------------------------------------------------


async def test_service_traffic_carries_each_callers_own_identity(mesh: MeshHarness, alice_hash: str) -> None:
    """(1) Both callers at once, on the same node Envoy (pooled tunnels): each request carries its own
    caller's identity; mallory's forged XFCC naming alice is dropped."""
    url = mesh.service(NS, "server").url("/")
    forged = _forged_xfcc(alice_hash)
    alice_replies, mallory_replies = await asyncio.gather(
        mesh.call_many(pod(mesh, "alice"), url, 12),
        mesh.call_many(pod(mesh, "mallory"), url, 12, headers=forged),
    )
    for who, replies in (("alice", alice_replies), ("mallory", mallory_replies)):
        assert [r.status for r in replies] == [200] * 12, (who, replies)
    for reply in alice_replies:
        assert _xfcc(reply.headers) == {"By": str(SERVER), "Hash": alice_hash, "URI": str(ALICE)}
    for reply in mallory_replies:
        xfcc = _xfcc(reply.headers)
        assert xfcc.get("URI") == str(MALLORY), reply.headers
        assert len(xfcc.get("Hash", "")) == 64, reply.headers
        _assert_not_alice(reply.headers, alice_hash, "service VIP")

    # TCP: the stores admit alice only, so what mallory's tunnel says about her decides (remote and local).
    for name in ("store", "vault"):
        target = f"tcp://{mesh.service(NS, name).cluster_ip}:9000"
        assert (await mesh.call(pod(mesh, "alice"), target)).pod == f"{NS}/{name}"
        denied = await mesh.call(pod(mesh, "mallory"), target)
        assert denied.pod is None, (name, denied)


async def test_pod_ips_are_reached_over_hbone_as_the_caller(mesh: MeshHarness, alice_hash: str) -> None:
    """(2) Pods' own IPs (no Service: what headless Services hand out), on the other node and on mallory's
    own: the node Envoy tunnels them over HBONE with the caller's certificate (`outbound_pods`), so STRICT
    admits them, the target sees mallory's identity whatever XFCC she wrote, and nothing reaches a pod in
    plaintext from the node's address (which the STRICT hook would have to accept as an Envoy delivery)."""
    for name in ("server", "alice"):  # node2, then mallory's own node1
        target = pod(mesh, name)
        result = await run_probe(
            mesh,
            pod(mesh, "mallory"),
            {
                "host": target.ip,
                "port": 8080,
                "send": _http_request(f"{target.ip}:8080", headers=_forged_xfcc(alice_hash)),
                "read_all": True,
            },
        )
        body = _http_json(result)
        assert body is not None, (name, result)
        headers = body.get("headers", {})
        assert _xfcc(headers).get("URI") == str(MALLORY), (name, body)
        _assert_not_alice(headers, alice_hash, f"{name} pod IP")


async def test_pod_ips_keep_the_authorization_policy(mesh: MeshHarness) -> None:
    """(2c) The stores admit alice only (mallory is denied through their Services: test 1). Their pod IPs,
    on either node, let alice in and keep mallory out."""
    for name in ("store", "vault"):
        target = f"tcp://{pod(mesh, name).ip}:9000"
        assert (await mesh.call(pod(mesh, "alice"), target)).pod == f"{NS}/{name}"
        denied = await mesh.call(pod(mesh, "mallory"), target)
        assert denied.pod is None, (name, denied)


async def test_node_envoy_ports_give_mallory_nothing_of_alices(mesh: MeshHarness, alice_hash: str) -> None:
    """(3) node1's Envoy addressed directly from mallory's pod."""
    mallory, node1 = pod(mesh, "mallory"), mesh.nodes[0]
    vip = mesh.service(NS, "server").cluster_ip

    # 15001: not redirected (it is an Envoy address). Whatever answers must not be alice's identity.
    outbound = await run_probe(
        mesh,
        mallory,
        {"host": node1.ip, "port": OUTBOUND_PORT, "send": _http_request(f"{vip}:80"), "read_all": True},
    )
    body = _http_json(outbound)
    if body is not None:
        xfcc = _xfcc(body.get("headers", {}))
        assert xfcc.get("URI") in (None, str(MALLORY)), outbound
        _assert_not_alice(body.get("headers", {}), alice_hash, "node1:15001")

    # 15008 in plaintext: no HTTP answer (it speaks TLS only).
    plain = await run_probe(
        mesh, mallory, {"host": node1.ip, "port": HBONE_PORT, "send": _http_request(node1.ip)}
    )
    assert plain["outcome"] in ("closed", "error"), plain
    # 15008 in TLS asking for alice's chain, with no client certificate: refused.
    for sni in (server_name(ALICE), server_name(MALLORY)):
        result = await run_probe(mesh, mallory, {"host": node1.ip, "port": HBONE_PORT, "tls": {"sni": sni}})
        assert _refused_by_tls(result), (sni, result)

    # Admin: on the node's loopback only. The node IP does not serve it, and a pod's loopback is its own.
    envoy = node1.envoy
    assert envoy is not None
    assert "LIVE" in envoy.admin("/ready")  # it is there, from the node's netns
    for host in (node1.ip, "127.0.0.1"):
        result = await run_probe(
            mesh, mallory, {"host": host, "port": envoy.admin_port, "send": "GET /ready\r\n"}
        )
        assert result["outcome"] == "error" and result["error"] == "ECONNREFUSED", (host, result)


async def test_remote_hbone_rejects_missing_and_forged_certificates(
    mesh: MeshHarness, tmp_path: Path
) -> None:
    """(4) node2's 15008 straight from mallory's pod: no client certificate, and a self-signed one that
    names alice. The server's certificate is really there (the probe reached the server's chain); ours is
    refused."""
    node2 = mesh.nodes[1]
    cert, key = _self_signed(tmp_path, ALICE)
    for tls in (
        {"sni": server_name(SERVER)},
        {"sni": server_name(SERVER), "cert": str(cert), "key": str(key)},
    ):
        result = await run_probe(
            mesh, pod(mesh, "mallory"), {"host": node2.ip, "port": HBONE_PORT, "tls": tls}
        )
        assert _refused_by_tls(result), (tls, result)
        if result.get("server_cert"):
            assert _uri_sans(result["server_cert"]) == [str(SERVER)], result


async def test_mallory_cannot_take_alices_source_ip(mesh: MeshHarness, alice_hash: str) -> None:
    """(5) The outbound side picks the identity by source IP. An ordinary pod cannot bind alice's IP;
    IP_FREEBIND (no capability needed) and even root adding alice's IP to mallory's interface get a SYN
    out, but the node routes alice's IP back to alice's interface: the handshake never completes, so no
    connection ever reaches alice's chain."""
    alice, mallory = pod(mesh, "alice"), pod(mesh, "mallory")
    vip = mesh.service(NS, "server").cluster_ip
    bind = await run_probe(
        mesh, mallory, {"source": alice.ip, "only_bind": True, "host": "", "port": 0}, drop_caps=True
    )
    assert bind["cap_eff"] == 0, bind
    assert bind["outcome"] == "error" and bind["error"] == "EADDRNOTAVAIL", bind

    request = {
        "host": vip,
        "port": 80,
        "source": alice.ip,
        "send": _http_request(f"{vip}:80"),
        "read_all": True,
    }
    freebind = await run_probe(mesh, mallory, {**request, "freebind": True}, drop_caps=True)
    assert _http_json(freebind) is None and freebind["outcome"] in ("timeout", "error"), freebind

    # Root in mallory's netns (a compromised CNI, say): alice's IP on mallory's own interface.
    await asyncio.to_thread(
        subprocess.run,
        ["ip", "-n", mallory.fabric.netns, "addr", "add", f"{alice.ip}/32", "dev", "eth0"],
        check=True,
    )
    try:
        spoofed = await run_probe(mesh, mallory, request)
    finally:
        await asyncio.to_thread(
            subprocess.run,
            ["ip", "-n", mallory.fabric.netns, "addr", "del", f"{alice.ip}/32", "dev", "eth0"],
            check=True,
        )
    body = _http_json(spoofed)
    if body is not None:
        _assert_not_alice(body.get("headers", {}), alice_hash, "spoofed source IP")
    assert spoofed["outcome"] in ("timeout", "error"), spoofed

    # Alice is untouched by all this.
    after = await mesh.call(alice, mesh.service(NS, "server").url("/"))
    assert _xfcc(after.headers).get("URI") == str(ALICE), after


def main() -> None:
    print(json.dumps(probe(json.loads(sys.argv[1]))))


if __name__ == "__main__":
    main()
