"""Fixtures: an API server double on an ephemeral port, and a kubernetes-asyncio client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from kubernetes_asyncio import client

from apidouble import ApiServerDouble

HERE = Path(__file__).parent


def load_yaml(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((HERE / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest_asyncio.fixture
async def api() -> AsyncIterator[ApiServerDouble]:
    async with ApiServerDouble(host="127.0.0.1", port=0, bookmark_interval=0.2) as server:
        yield server


@pytest_asyncio.fixture
async def k8s(api: ApiServerDouble) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration(host=api.url)
    async with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
def widget_crd() -> dict[str, Any]:
    return load_yaml("widget-crd.yaml")


@pytest.fixture
def widget() -> dict[str, Any]:
    return load_yaml("widget.yaml")
