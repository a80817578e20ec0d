"""`meshctl proxy-status`: one row per connected stream (a node's Envoy or its agent), from CSDS.

`rows_from_csds` turns a ClientStatusResponse into `ProxyRow` values; `render` prints them. Both pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from envoy.service.status.v3 import csds_pb2

from controlplane.xds import typeurls
from meshctl.bootstrap import DEFAULT_ENVOY_CLUSTER, KIND_METADATA_KEY
from meshctl.output import Cell, Color, Painter, age, render_table

STREAM_METADATA_KEY = "nodemesh.io/stream"  # what controlplane.xds.csds adds to each node
AGENT_CLUSTER = "nodemesh-agent"
VERSION_CHARS = 8

# Column labels, in push order.
TYPE_LABELS: Mapping[str, str] = {
    typeurls.CLUSTER: "CDS",
    typeurls.ENDPOINT: "EDS",
    typeurls.LISTENER: "LDS",
    typeurls.ROUTE: "RDS",
    typeurls.SECRET: "SDS",
    typeurls.NODE_SETTINGS: "SETTINGS",
    typeurls.SERVICE_VIP: "VIPS",
    typeurls.WORKLOAD: "WORKLOADS",
}


class ProxyKind(StrEnum):
    ENVOY = "envoy"
    AGENT = "agent"
    UNKNOWN = "unknown"


class SyncState(StrEnum):
    SYNCED = "SYNCED"
    NOT_SENT = "NOT SENT"
    STALE = "STALE"
    ERROR = "ERROR"
    UNKNOWN = "UNKNOWN"


_FROM_CSDS: Mapping[int, SyncState] = {
    csds_pb2.SYNCED: SyncState.SYNCED,
    csds_pb2.NOT_SENT: SyncState.NOT_SENT,
    csds_pb2.STALE: SyncState.STALE,
    csds_pb2.ERROR: SyncState.ERROR,
}
STATE_COLORS: Mapping[SyncState, Color] = {
    SyncState.SYNCED: Color.GREEN,
    SyncState.NOT_SENT: Color.YELLOW,
    SyncState.STALE: Color.YELLOW,
    SyncState.ERROR: Color.RED,
    SyncState.UNKNOWN: Color.YELLOW,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    version: str
    message: str
    at: str  # RFC 3339


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeState:
    type_url: str
    state: SyncState
    version: str  # the version last sent
    updated: float | None  # when it was sent (epoch seconds)
    nack: Nack | None

    @property
    def label(self) -> str:
        return TYPE_LABELS.get(self.type_url, self.type_url.rpartition(".")[2].upper())


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyRow:
    node: str
    kind: ProxyKind
    cluster: str
    variant: str
    replica: str
    peer: str
    stream_id: int
    connected_since: float | None
    types: tuple[TypeState, ...]

    @property
    def problems(self) -> tuple[TypeState, ...]:
        return tuple(t for t in self.types if t.state is not SyncState.SYNCED)


def _string(struct: Any, key: str) -> str:
    value = struct.fields.get(key)
    return str(value.string_value) if value is not None else ""


def proxy_kind(node: Any) -> ProxyKind:
    """From the node metadata `nodemesh.io/kind`, else the node cluster, else Envoy's user agent."""
    declared = _string(node.metadata, KIND_METADATA_KEY)
    if declared in (ProxyKind.ENVOY, ProxyKind.AGENT):
        return ProxyKind(declared)
    if AGENT_CLUSTER in (node.cluster, node.user_agent_name):
        return ProxyKind.AGENT
    if node.cluster == DEFAULT_ENVOY_CLUSTER or node.user_agent_name == "envoy":
        return ProxyKind.ENVOY
    return ProxyKind.UNKNOWN


def _seconds(stamp: Any) -> float | None:
    if not stamp.seconds and not stamp.nanos:
        return None
    return float(stamp.seconds) + float(stamp.nanos) / 1e9


def _parse_time(text: str) -> float | None:
    try:
        return float(datetime.fromisoformat(text).timestamp()) if text else None
    except ValueError:
        return None


def _type_state(entry: Any) -> TypeState:
    nack = None
    if entry.HasField("error_state"):
        error = entry.error_state
        nack = Nack(
            version=str(error.version_info),
            message=str(error.details),
            at=error.last_update_attempt.ToJsonString() if error.HasField("last_update_attempt") else "",
        )
    return TypeState(
        type_url=str(entry.type_url),
        state=_FROM_CSDS.get(entry.config_status, SyncState.UNKNOWN),
        version=str(entry.version_info),
        updated=_seconds(entry.last_updated),
        nack=nack,
    )


def _type_order(type_url: str) -> tuple[int, str]:
    order = typeurls.PUSH_ORDER
    return (order.index(type_url) if type_url in order else len(order), type_url)


def row_from_config(config: Any) -> ProxyRow:
    node = config.node
    facts_value = node.metadata.fields.get(STREAM_METADATA_KEY)
    facts = facts_value.struct_value if facts_value is not None else None
    # The per-type summary is the entry with an empty name; the named ones are per resource.
    summaries = [_type_state(e) for e in config.generic_xds_configs if not e.name]
    return ProxyRow(
        node=str(node.id),
        kind=proxy_kind(node),
        cluster=str(node.cluster),
        variant=_string(facts, "variant") if facts is not None else "",
        replica=_string(facts, "replica") if facts is not None else "",
        peer=_string(facts, "peer") if facts is not None else "",
        stream_id=int(facts.fields["id"].number_value) if facts is not None and "id" in facts.fields else 0,
        connected_since=_parse_time(_string(facts, "connected_since")) if facts is not None else None,
        types=tuple(sorted(summaries, key=lambda t: _type_order(t.type_url))),
    )


def rows_from_csds(response: Any) -> tuple[ProxyRow, ...]:
    rows = (row_from_config(c) for c in response.config)
    return tuple(sorted(rows, key=lambda r: (r.node, r.kind.value, r.stream_id)))


def short_version(version: str) -> str:
    return version[:VERSION_CHARS]


def _iso(seconds: float | None) -> str | None:
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds") if seconds else None


def to_document(rows: Sequence[ProxyRow]) -> list[dict[str, object]]:
    """The rows for `-o json|yaml`: full versions, NACK messages, absolute times."""
    return [
        {
            "node": r.node,
            "kind": r.kind.value,
            "cluster": r.cluster,
            "variant": r.variant,
            "replica": r.replica,
            "peer": r.peer,
            "stream_id": r.stream_id,
            "connected_since": _iso(r.connected_since),
            "types": {
                t.label.lower(): {
                    "type_url": t.type_url,
                    "status": t.state.value,
                    "version": t.version,
                    "sent_at": _iso(t.updated),
                    "nack": None
                    if t.nack is None
                    else {"version": t.nack.version, "message": t.nack.message, "at": t.nack.at},
                }
                for t in r.types
            },
        }
        for r in rows
    ]


def render(rows: Sequence[ProxyRow], *, painter: Painter, now: float) -> str:
    """A table with a column per type any proxy holds (`-` where a proxy has none), then the NACKs."""
    type_urls = sorted({t.type_url for r in rows for t in r.types}, key=_type_order)
    labels = [TYPE_LABELS.get(u, u.rpartition(".")[2].upper()) for u in type_urls]
    headers = ["NODE", "KIND", "VARIANT", "REPLICA", *labels, "CONNECTED"]
    table: list[list[Cell | str]] = []
    for r in rows:
        by_type = {t.type_url: t for t in r.types}
        cells: list[Cell | str] = [r.node, r.kind.value, r.variant or "-", r.replica or "-"]
        for type_url in type_urls:
            state = by_type.get(type_url)
            if state is None:
                cells.append("-")
            else:
                text = f"{state.state.value} {short_version(state.version)}".strip()
                cells.append(Cell(text=text, color=STATE_COLORS[state.state]))
        since = f"{age(now - r.connected_since)} ago" if r.connected_since is not None else "-"
        cells.append(since)
        table.append(cells)
    text = render_table(headers, table, painter)
    nacks = [(r, t) for r in rows for t in r.types if t.nack is not None and t.state is SyncState.ERROR]
    if nacks:
        text += "\n" + painter.paint("Rejected (NACK):", Color.RED) + "\n"
        for r, t in nacks:
            assert t.nack is not None
            message = t.nack.message.strip().replace("\n", "\n      ")
            text += f"  {r.node} ({r.kind.value}) {t.label} version {short_version(t.nack.version)}:\n"
            text += f"      {message}\n"
    return text
