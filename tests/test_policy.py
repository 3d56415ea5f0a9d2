"""The routing policy, table-driven over small hand-made clusters (no network, no clock)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from labrouter.core.classify import Classification
from labrouter.core.config import parse_config
from labrouter.core.peers import ModelInfo, NodeState, Peer, ServerState
from labrouter.core.policy import RouteHistory, SpeedBook, choose, model_matches

CFG = parse_config("""
[routes.quick]
models = ["qwen3:4b", "llama3.2:3b"]
[routes.code]
models = ["qwen3-coder:30b", "qwen2.5-coder:32b", "qwen2.5-coder:7b"]
fallback = "quick"
[routes.reasoning]
models = ["deepseek-r1:8b"]
fallback = "quick"
[routes.vision]
models = ["qwen2.5vl:7b", "minicpm-v"]
fallback = "quick"
""")


def cls(route: str, confidence: float = 0.9, image: bool = False) -> Classification:
    return Classification(route=route, scores={route: 1.0}, confidence=confidence,
                          reasons=(f"{route}: test",), runner_up="", has_image=image)


def m(name: str, vision: bool = False) -> ModelInfo:
    return ModelInfo(name=name, params_b=ModelInfo.guess_params(name), vision=vision)


def server(models: list[ModelInfo], loaded: tuple[str, ...] = (), sid: str = "ollama",
           **kw: object) -> ServerState:
    return ServerState(id=sid, url="http://127.0.0.1:11434", models=tuple(models),
                       loaded=loaded, **kw)  # type: ignore[arg-type]


def peer(name: str, *servers: ServerState, **kw: object) -> Peer:
    return Peer(node_id=f"id-{name}", name=name, servers=servers, **kw)  # type: ignore[arg-type]


MAC = peer("mac", server([m("qwen3:4b"), m("llama3.2:3b")], loaded=("qwen3:4b",)), is_self=True)
GPU = peer("gpu", server([m("qwen3-coder:30b"), m("qwen2.5-coder:7b"), m("deepseek-r1:8b"),
                          m("qwen2.5vl:7b", vision=True), m("qwen3:4b")]))
CPU = peer("cpu", server([m("minicpm-v", vision=True), m("llama3.2:3b")]))
LAB = [MAC, GPU, CPU]


def labels(cands: list) -> list[str]:
    return [c.label for c in cands]


@pytest.mark.parametrize("route,first", [
    ("quick", "qwen3:4b on mac"),
    ("code", "qwen3-coder:30b on gpu"),
    ("reasoning", "deepseek-r1:8b on gpu"),
    ("vision", "qwen2.5vl:7b on gpu"),
])
def test_each_route_goes_to_its_first_choice(route: str, first: str) -> None:
    cands = choose(cls(route), LAB, CFG)
    assert cands[0].label == first
    assert not cands[0].fallback and route in cands[0].reason


def test_code_falls_back_to_a_smaller_code_model_then_quick_when_the_gpu_box_is_down() -> None:
    down = replace(GPU, state=NodeState.DOWN)
    cands = choose(cls("code"), [MAC, down, CPU], CFG)
    assert cands[0].label == "qwen3:4b on mac" and cands[0].fallback
    assert cands[0].route == "quick"
    # with the GPU up, the smaller coder comes before the quick route
    order = labels(choose(cls("code"), LAB, CFG))
    assert order.index("qwen2.5-coder:7b on gpu") < order.index("qwen3:4b on mac")


def test_paused_nodes_get_no_work_and_say_why() -> None:
    paused = replace(GPU, paused=True, pause_reason="rented out")
    notes: list[str] = []
    cands = choose(cls("code"), [MAC, paused, CPU], CFG, notes=notes)
    assert all(c.peer.name != "gpu" for c in cands)
    assert any("gpu is paused (rented out)" in n for n in notes)


def test_a_down_server_or_a_missing_model_is_never_a_candidate() -> None:
    gpu_srv_down = replace(GPU, servers=(replace(GPU.servers[0], up=False, error="refused"),))
    cands = choose(cls("code"), [MAC, gpu_srv_down], CFG)
    assert all(c.peer.name == "mac" for c in cands)
    for c in choose(cls("quick"), LAB, CFG):
        assert c.server.model(c.model) is not None


def test_loaded_beats_cold_within_a_size_class_but_not_across() -> None:
    big1 = peer("a", server([m("qwen3-coder:30b"), m("qwen2.5-coder:32b"), m("qwen2.5-coder:7b")],
                            loaded=("qwen2.5-coder:32b", "qwen2.5-coder:7b")))
    order = labels(choose(cls("code"), [big1], CFG))
    # 30b and 32b are one class: the loaded 32b wins; the loaded 7b stays behind both
    assert order[:3] == ["qwen2.5-coder:32b on a", "qwen3-coder:30b on a",
                         "qwen2.5-coder:7b on a"]


def test_the_same_model_on_two_machines_goes_to_the_faster_then_the_less_busy() -> None:
    a = peer("a", server([m("qwen3:4b")]))
    b = peer("b", server([m("qwen3:4b")]))
    speeds = SpeedBook()
    speeds.record("a/ollama/qwen3:4b", ttft=2.0, tokens=100, duration=12.0)
    speeds.record("b/ollama/qwen3:4b", ttft=0.2, tokens=100, duration=1.2)
    assert choose(cls("quick"), [a, b], CFG, speeds)[0].peer.name == "b"
    busy_b = replace(b, servers=(replace(b.servers[0], in_flight=3),))
    assert choose(cls("quick"), [a, busy_b], CFG)[0].peer.name == "a"


def test_vision_prefers_any_vision_model_then_a_text_model_without_the_image() -> None:
    cands = choose(cls("vision", image=True), [MAC, CPU], CFG)
    assert cands[0].label == "minicpm-v on cpu" and not cands[0].drop_image
    text_only = choose(cls("vision", image=True), [MAC], CFG)
    assert text_only[0].route == "quick" and text_only[0].drop_image
    assert "image left out" in text_only[0].reason
    other_vision = peer("x", server([m("llava-phi3", vision=True), m("qwen3:4b")]))
    cands = choose(cls("vision", image=True), [other_vision], CFG)
    assert cands[0].model == "llava-phi3" and not cands[0].drop_image


def test_cloud_only_on_routes_that_allow_it_and_within_budget() -> None:
    cfg = parse_config("""
[routes.code]
models = ["qwen3-coder:30b", "gpt-5-mini"]
allow_cloud = true
[budget]
daily_usd = 2.0
""")
    cloud = peer("mac", server([m("qwen3:4b")]),
                 server([m("gpt-5-mini")], sid="cloud", cost_input_per_1k=0.001,
                        cost_output_per_1k=0.002), is_self=True)
    assert "gpt-5-mini on mac" in labels(choose(cls("code"), [cloud], cfg))
    notes: list[str] = []
    spent = choose(cls("code"), [cloud], cfg, spent_today=2.5, notes=notes)
    assert "gpt-5-mini on mac" not in labels(spent)
    assert any("budget" in n for n in notes)
    notes = []
    quick = choose(cls("quick"), [cloud], cfg, notes=notes)
    assert "gpt-5-mini on mac" not in labels(quick)
    assert any("not worth a cloud call" in n for n in notes)


def test_a_borderline_prompt_stays_on_the_sticky_route() -> None:
    hist = RouteHistory()
    for t in (0.0, 10.0, 20.0):
        hist.add(t, "code")
    weak = replace(cls("quick", confidence=0.4), scores={"quick": 1.0, "code": 0.8})
    assert choose(weak, LAB, CFG, history=hist, now=30.0)[0].route == "code"
    # a weak quick prompt with no sign of code at all does not stick
    unrelated = cls("quick", confidence=0.4)
    assert choose(unrelated, LAB, CFG, history=hist, now=30.0)[0].route == "quick"
    strong = cls("quick", confidence=0.9)
    assert choose(strong, LAB, CFG, history=hist, now=30.0)[0].route == "quick"
    # stale history does not stick
    assert choose(weak, LAB, CFG, history=hist, now=1000.0)[0].route == "quick"


def test_something_always_answers_with_models_outside_every_list() -> None:
    odd = peer("nas", server([m("mistral:7b"), m("nomic-embed-text")]))
    cands = choose(cls("code"), [odd], CFG)
    assert labels(cands) == ["mistral:7b on nas"]  # an embedding model never answers
    assert cands[0].fallback


def test_forced_model_and_node() -> None:
    cands = choose(cls("quick"), LAB, CFG, model="llama3.2:*")
    assert {c.model for c in cands} == {"llama3.2:3b"}
    cands = choose(cls("quick"), LAB, CFG, node="cpu")
    assert {c.peer.name for c in cands} == {"cpu"}
    notes: list[str] = []
    assert choose(cls("quick"), LAB, CFG, node="cpx", notes=notes) == []
    assert "no machine named 'cpx'; machines: cpu, gpu, mac" in notes


def test_a_server_that_just_failed_is_tried_last() -> None:
    a = peer("a", server([m("qwen3:4b")]))
    b = peer("b", server([m("qwen3:4b")]))
    order = labels(choose(cls("quick"), [a, b], CFG, suspect={("id-a", "ollama")}))
    assert order == ["qwen3:4b on b", "qwen3:4b on a"]
    # even with its model in memory, and even behind the fallback route's models
    warm_a = peer("a", server([m("qwen3-coder:30b"), m("qwen3:4b")], loaded=("qwen3-coder:30b",)))
    order = labels(choose(cls("code"), [warm_a, b], CFG, suspect={("id-a", "ollama")}))
    assert order == ["qwen3:4b on b", "qwen3-coder:30b on a", "qwen3:4b on a"]
    forced = choose(cls("quick"), [a, b], CFG, model="qwen3:4b", suspect={("id-b", "ollama")})
    assert labels(forced) == ["qwen3:4b on a", "qwen3:4b on b"]


def test_a_damaged_speed_table_is_ignored_not_fatal() -> None:
    assert SpeedBook.from_dict([1, 2]).speeds == {}  # type: ignore[arg-type]
    book = SpeedBook.from_dict({"nan": {"ttft": float("nan"), "tps": 1.0},
                                "inf": {"ttft": 0.1, "tps": "inf"},
                                "neg": {"ttft": -1, "tps": 1.0},
                                "ok": {"ttft": 0.1, "tps": 10.0}})
    assert set(book.speeds) == {"ok"}


@pytest.mark.parametrize("pattern,name,ok", [
    ("qwen3:4b", "qwen3:4b", True),
    ("qwen3:4b", "qwen3:4b-q4_K_M", True),
    ("qwen3:4b", "qwen3:40b", False),
    ("minicpm-v", "minicpm-v:latest", True),
    ("minicpm-v", "minicpm-v2:latest", False),
    ("qwen2.5-coder:*", "qwen2.5-coder:7b", True),
    ("QWEN3:4B", "qwen3:4b", True),
])
def test_model_matching(pattern: str, name: str, ok: bool) -> None:
    assert model_matches(pattern, name) is ok


def test_speed_book_survives_a_round_trip_and_bad_entries() -> None:
    book = SpeedBook()
    book.record("a/s/m", 0.5, 100, 2.5)
    again = SpeedBook.from_dict({**book.to_dict(), "bad": {"ttft": "x"}, "worse": 3})
    assert again.expected_seconds("a/s/m") == pytest.approx(book.expected_seconds("a/s/m"))
    assert again.expected_seconds("bad") is None


def test_busy_is_judged_by_the_server_then_the_node_without_double_counting() -> None:
    # a: its server has 1 in flight (node total 1); b: server 0, but the node runs 2
    # requests on another server. The server's own queue decides first.
    a = peer("a", server([m("qwen3:4b")], in_flight=1), in_flight=1)
    b = peer("b", server([m("qwen3:4b")], in_flight=0), in_flight=2)
    assert choose(cls("quick"), [a, b], CFG)[0].peer.name == "b"
    c = peer("c", server([m("qwen3:4b")], in_flight=0), in_flight=0)
    assert choose(cls("quick"), [b, c], CFG)[0].peer.name == "c"
