from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from controlplane.logs import LogFormat, configure_logging


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(log_format: LogFormat) -> str:
    stream = io.StringIO()
    configure_logging(log_format=log_format, level="info", stream=stream)
    log = logging.getLogger("controlplane.test")
    log.debug("hidden")
    log.info("pushed %s", "cds", extra={"node": "node a", "resources": 3})
    return stream.getvalue()


@pytest.mark.usefixtures("restore_root_logger")
def test_text_format_is_key_value_with_context_fields() -> None:
    [line] = emit(LogFormat.TEXT).splitlines()
    assert ' level=info logger=controlplane.test msg="pushed cds" node="node a" resources=3' in line
    assert line.startswith("ts=")


@pytest.mark.usefixtures("restore_root_logger")
def test_json_format_is_one_object_per_line() -> None:
    [line] = emit(LogFormat.JSON).splitlines()
    record = json.loads(line)
    assert record["msg"] == "pushed cds"
    assert record["node"] == "node a"
    assert record["resources"] == 3
    assert record["level"] == "info"


@pytest.mark.usefixtures("restore_root_logger")
def test_exceptions_are_kept() -> None:
    stream = io.StringIO()
    configure_logging(log_format=LogFormat.JSON, stream=stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    assert "ValueError: boom" in json.loads(stream.getvalue())["exception"]
