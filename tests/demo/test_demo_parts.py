"""The demo's pure parts: its YAML passes the offline analyzer, XFCC parsing, printing, the state file and
`demo down` when there is nothing (or only a dead process) to stop. The story itself runs in
integration/test_demo.py."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from demo import daemon
from demo.app import PODS, SERVICES, spec
from demo.console import Console, Outcome
from demo.manifests import reviews_authorization, reviews_route, strict_mtls
from demo.state import STATE_FILE, DemoState, PodState, StateError, alive, load, start_ticks
from demo.traffic import client_identity
from integration.meshobjects import namespace_object, service_object
from meshctl.analyze import analyze_offline


def _application() -> list[dict[str, Any]]:
    services = []
    for index, service in enumerate(SERVICES):
        obj = service_object(
            namespace=service.namespace, name=service.name, selector=service.selector, ports=[service.port]
        )
        obj["spec"]["clusterIP"] = f"198.19.128.{10 + index}"  # the API server allocates one in the demo
        services.append(obj)
    return [namespace_object("shop", enrolled=True), namespace_object("web", enrolled=True), *services]


def _errors(tmp_path: Path, docs: list[dict[str, Any]]) -> list[dict[str, object]]:
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump_all(docs))
    found, _ = analyze_offline(tmp_path)
    return [d for d in found if d.get("severity") == "Error"]


def test_every_manifest_of_the_story_passes_the_offline_analyzer(tmp_path: Path) -> None:
    story = [reviews_route(header_route=True), *reviews_authorization(), strict_mtls()]
    assert _errors(tmp_path, [*_application(), *story]) == []


def test_the_analyzer_would_catch_a_wrong_backend_in_the_route(tmp_path: Path) -> None:
    route = reviews_route()
    route["spec"]["rules"][0]["backendRefs"][0]["name"] = "reviewz"
    (error,) = _errors(tmp_path, [*_application(), route])
    assert "reviewz" in str(error["message"])


def test_the_route_splits_by_weight_and_the_header_rule_comes_first() -> None:
    plain, pinned = reviews_route(split=(80, 20)), reviews_route(split=(80, 20), header_route=True)
    weights = [(b["name"], b["weight"]) for b in plain["spec"]["rules"][0]["backendRefs"]]
    assert weights == [("reviews-v1", 80), ("reviews-v2", 20)]
    first = pinned["spec"]["rules"][0]
    assert first["matches"] == [{"headers": [{"name": "x-user", "value": "tester"}]}]
    assert first["backendRefs"] == [{"name": "reviews-v2", "port": 9080}]
    assert pinned["spec"]["rules"][1] == plain["spec"]["rules"][0]


def test_the_policies_name_callers_by_principal() -> None:
    deny, allow = reviews_authorization()
    assert deny["spec"]["action"] == "DENY"
    assert deny["spec"]["rules"][0]["from"][0]["source"]["principals"] == ["cluster.local/ns/web/sa/batch"]
    assert allow["spec"]["rules"][0]["from"][0]["source"]["principals"] == [
        "cluster.local/ns/web/sa/frontend"
    ]
    assert spec("frontend").spiffe_id == "spiffe://cluster.local/ns/web/sa/frontend"


@pytest.mark.parametrize(
    ("xfcc", "expected"),
    [
        (
            "By=spiffe://td/ns/shop/sa/reviews;Hash=ab12;URI=spiffe://td/ns/web/sa/frontend",
            "spiffe://td/ns/web/sa/frontend",
        ),
        ('By=x;URI="spiffe://td/ns/a/sa/b"', "spiffe://td/ns/a/sa/b"),
        ("URI=spiffe://td/ns/a/sa/first,By=y;URI=spiffe://td/ns/a/sa/last", "spiffe://td/ns/a/sa/last"),
        ("By=spiffe://td/ns/shop/sa/reviews;Hash=ab12", None),
        ("", None),
    ],
)
def test_the_callers_identity_is_the_uri_of_the_last_xfcc_element(xfcc: str, expected: str | None) -> None:
    assert client_identity(xfcc) == expected


def test_a_progress_line_per_step_without_colours_off_a_terminal() -> None:
    out = io.StringIO()
    console = Console(total=3, stream=out)
    console.begin("first")
    console.end(Outcome.OK, 0.84)
    console.detail(["a detail"])
    console.begin("teardown", index=3)
    console.end(Outcome.FAILED, 1.0)

    assert out.getvalue() == "[1/3] first ... ok (0.8 s)\n      a detail\n[3/3] teardown ... FAILED (1.0 s)\n"


def test_colours_when_asked() -> None:
    out = io.StringIO()
    console = Console(total=1, stream=out, color=True)
    console.begin("x")
    console.end(Outcome.WARN, 0.1)
    assert "\x1b[33mwarn\x1b[0m" in out.getvalue()


def _state(pid: int, ticks: int) -> DemoState:
    pods = {
        p.key: PodState(ref=p.ref, node="node1", ip="198.18.1.1", identity=p.spiffe_id, netns="n", cgroup="c")
        for p in PODS
    }
    return DemoState(
        pid=pid,
        start_ticks=ticks,
        run_id="zz0000",
        api_server="http://127.0.0.1:1",
        kubeconfig="k",
        controlplane="unix:/x",
        admin="127.0.0.1:2",
        workdir="w",
        manifests="m",
        nodes={"node1": "198.19.0.1"},
        services={"shop/reviews": "198.19.128.2:9080"},
        pods=pods,
    )


def test_the_state_file_round_trips_and_finds_pods_by_any_name(tmp_path: Path) -> None:
    ticks = start_ticks(os.getpid())
    assert ticks is not None
    state = _state(os.getpid(), ticks)
    (tmp_path / STATE_FILE).write_text(state.to_json())

    loaded = load(tmp_path)
    assert loaded == state and alive(loaded)
    frontend = spec("frontend")
    assert {loaded.pod(n).ref for n in ("frontend", frontend.name, frontend.ref)} == {frontend.ref}
    with pytest.raises(StateError, match="no pod 'nginx'"):
        loaded.pod("nginx")
    # The same pid with another start time is another process: never ours to signal.
    assert not alive(_state(os.getpid(), ticks + 1))


def test_a_garbled_or_missing_state_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no demo is running"):
        load(tmp_path)
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": 1}))
    with pytest.raises(StateError, match="unreadable"):
        load(tmp_path)


def test_down_with_nothing_running_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon.down(tmp_path / "none") == 0
    assert "no demo is running" in capsys.readouterr().out


def test_down_after_the_holder_died_without_a_teardown_fails_and_keeps_the_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ticks = start_ticks(os.getpid())
    assert ticks is not None
    (tmp_path / STATE_FILE).write_text(_state(os.getpid(), ticks + 1).to_json())  # not this process

    assert daemon.down(tmp_path) == 1
    err = capsys.readouterr().err
    assert "is not running any more" in err and "recorded no teardown" in err
    assert (tmp_path / STATE_FILE).exists()
