from __future__ import annotations

import aiohttp
from prometheus_client import CollectorRegistry

from nodeagent.health import HealthServer
from nodeagent.metrics import AgentCollector, AgentState


async def test_readiness_follows_the_agent_state_and_metrics_are_served() -> None:
    registry = CollectorRegistry()
    state = AgentState(node="n1")
    registry.register(AgentCollector(state))
    async with (
        HealthServer("127.0.0.1:0", ready=lambda: state.ready, registry=registry) as server,
        aiohttp.ClientSession() as session,
    ):
        base = f"http://127.0.0.1:{server.port}"
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{base}/readyz") as response:
            assert response.status == 503
        state.programs_attached = True
        state.plans_applied = 1
        state.plan_version = "abc123"
        async with session.get(f"{base}/readyz") as response:
            assert response.status == 200
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
    assert 'nodemesh_agent_plan_info{version="abc123"} 1.0' in text
    assert "nodemesh_agent_ready 1.0" in text
    assert "nodemesh_agent_plans_applied_total 1.0" in text
