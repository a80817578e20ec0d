"""Small helpers shared by the builders: protobuf Durations, Any packing, percentages, config sources."""

from __future__ import annotations

from envoy.config.core.v3 import config_source_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from controlplane.model.duration import Duration


def duration(value: Duration) -> duration_pb2.Duration:
    seconds, nanos = value.seconds_and_nanos()
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    # deterministic=True: map fields serialize in key order, so equal configs give equal bytes.
    packed.type_url = "type.googleapis.com/" + message.DESCRIPTOR.full_name
    packed.value = message.SerializeToString(deterministic=True)
    return packed


def per_million(numerator: float, denominator: float = 100.0) -> percent_pb2.FractionalPercent:
    """numerator/denominator as a FractionalPercent over a million (Envoy's finest denominator)."""
    value = round(numerator * 1_000_000 / denominator) if denominator else 0
    return percent_pb2.FractionalPercent(
        numerator=max(0, min(value, 1_000_000)), denominator=percent_pb2.FractionalPercent.MILLION
    )


def ads_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )
