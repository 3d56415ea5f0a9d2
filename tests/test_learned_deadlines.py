"""Deadlines learned from what each server has shown, and faults remembered (pure: no
network, no clock but the one passed in)."""

from __future__ import annotations

import pytest

from labrouter.core.health import FaultBook
from labrouter.core.policy import DeadlineRule, SpeedBook, choose, percentile
from tests.test_policy import CFG, LAB, cls, labels, m, peer, server

KEY = "mac/ollama/qwen3:4b"


def book_with(warm: list[float] = (), cold: list[float] = (),  # type: ignore[assignment]
              gaps: list[float] = ()) -> SpeedBook:  # type: ignore[assignment]
    book = SpeedBook()
    for t in warm:
        book.record(KEY, t, 50, t + 1.0, loaded=True)
    for t in cold:
        book.record(KEY, t, 50, t + 1.0, loaded=False)
    for g in gaps:
        book.record_gaps(KEY, g)
    return book


def test_percentile_by_nearest_rank() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([7.0], 95) == 7.0


@pytest.mark.parametrize("warm,loaded,first,hedge,learned", [
    # a loaded 4B that always starts in 0.3 s is given up on within a couple of seconds
    ([0.3] * 10, True, 2.0, 0.5, True),
    # a slower loaded model: p95 1.0 s -> 1.0 * 3 + 1 = 4 s, hedge after 1.5 s
    ([0.5] * 9 + [1.0] * 3, True, 4.0, 1.5, True),
    # too few samples: the ceiling for a loaded model, but a hedge after 3 s
    ([0.3] * 2, True, 60.0, 3.0, False),
    # cold, never measured cold: the configured ceiling, no hedge
    ([0.3] * 10, False, 60.0, None, False),
    # learned far above the ceiling: the ceiling wins
    ([40.0] * 10, True, 60.0, None, True),
])
def test_first_token_deadline(warm: list[float], loaded: bool, first: float,
                              hedge: float | None, learned: bool) -> None:
    dl = book_with(warm).deadlines(KEY, loaded, 60.0, 30.0)
    assert dl.first_token == pytest.approx(first)
    assert dl.hedge_after == (pytest.approx(hedge) if hedge is not None else None)
    assert dl.learned is learned


def test_a_cold_load_keeps_its_tens_of_seconds() -> None:
    # learned cold loads of 1 s (really warm, mislabelled) never cut a cold load under 10 s
    dl = book_with(cold=[1.0] * 10).deadlines(KEY, False, 60.0, 30.0)
    assert dl.first_token == 10.0
    dl = book_with(cold=[12.0] * 10).deadlines(KEY, False, 60.0, 30.0)
    assert dl.first_token == 37.0  # 12 * 3 + 1


def test_a_loaded_model_is_never_treated_as_cold() -> None:
    book = book_with(warm=[0.3] * 10, cold=[20.0] * 10)
    assert book.deadlines(KEY, True, 60.0, 30.0).first_token == 2.0
    assert book.deadlines(KEY, False, 60.0, 30.0).first_token == 60.0


def test_a_long_prompt_gets_its_prefill_time() -> None:
    book = book_with(warm=[0.3] * 10)
    short = book.deadlines(KEY, True, 60.0, 30.0)
    long = book.deadlines(KEY, True, 60.0, 30.0, prompt_tokens=5000)
    assert short.first_token == 2.0  # the floor
    assert long.first_token == pytest.approx(0.3 * 3 + 1 + 5000 / 500)


@pytest.mark.parametrize("gaps,gap", [
    ([0.01] * 10, 1.5),  # a fast server: the floor
    ([0.5] * 10, 2.0),  # slow but steady: 0.5 * 3 + 0.5, never abandoned at its pace
    ([20.0] * 10, 30.0),  # the ceiling
    ([0.01] * 3, 30.0),  # not measured yet: the ceiling
])
def test_gap_deadline(gaps: list[float], gap: float) -> None:
    assert book_with(warm=[0.1], gaps=gaps).deadlines(
        KEY, True, 60.0, 30.0).gap == pytest.approx(gap)


def test_samples_survive_a_round_trip_and_bad_entries() -> None:
    book = book_with(warm=[0.3] * 6, cold=[9.0] * 5, gaps=[0.02] * 5)
    again = SpeedBook.from_dict(book.to_dict())
    assert again.speeds[KEY].warm == [0.3] * 6 and again.speeds[KEY].cold == [9.0] * 5
    assert again.deadlines(KEY, True, 60, 30) == book.deadlines(KEY, True, 60, 30)
    bad = book.to_dict()
    bad[KEY]["warm"] = [0.3, "x", -1, float("nan"), True, 0.4]
    bad[KEY]["gaps"] = "not a list"
    again = SpeedBook.from_dict(bad)
    assert again.speeds[KEY].warm == [0.3, 0.4] and again.speeds[KEY].gaps == []
    # the old format (averages only) still loads
    assert SpeedBook.from_dict({KEY: {"ttft": 0.2, "tps": 30}}).speeds[KEY].warm == []


def test_only_recent_samples_are_kept() -> None:
    book = book_with(warm=[5.0] * 40 + [0.3] * 40)
    assert book.deadlines(KEY, True, 60, 30).first_token == 2.0  # the slow past is forgotten


def test_custom_rule() -> None:
    rule = DeadlineRule(margin=2.0, first_pad=0.0, first_floor=0.1, min_samples=1)
    assert book_with(warm=[0.3]).deadlines(KEY, True, 60, 30, rule).first_token == 0.6


# ---------------------------------------------------------------- faults remembered


NODE = ("id-gpu", "ollama", "qwen3-coder:30b")


def test_a_fault_demotes_with_growing_back_off() -> None:
    book = FaultBook(base_backoff=30, max_backoff=100, probe_every=10)
    assert book.fault(NODE, 0.0, "missed its first-token deadline") == 30
    assert book.demoted(29.0) == {NODE} and book.demoted(31.0) == set()
    assert book.fault(NODE, 40.0, "again") == 60  # the second in a row: twice as long
    assert book.fault(NODE, 50.0, "again") == 100  # capped
    assert book.servers_demoted(60.0) == {("id-gpu", "ollama")}
    assert book.ok(NODE) and book.demoted(60.0) == set()
    assert book.fault(NODE, 70.0, "once more") == 30  # forgiven: starts over


def test_probes_come_due_while_demoted() -> None:
    book = FaultBook(base_backoff=30, probe_every=10)
    book.fault(NODE, 0.0, "stalled")
    assert book.due_probes(5.0) == []
    assert book.due_probes(10.0) == [NODE]
    assert book.due_probes(12.0) == []  # probed just now
    assert book.due_probes(20.0) == [NODE]
    assert book.due_probes(31.0) == []  # no longer demoted: the next request is the probe


def test_a_demoted_model_is_tried_last_and_said_why() -> None:
    notes: list[str] = []
    first = choose(cls("code"), LAB, CFG)[0]
    assert first.label == "qwen3-coder:30b on gpu"
    cands = choose(cls("code"), LAB, CFG, demoted={first.health_key}, notes=notes)
    assert cands[0].label != first.label and cands[-1].label == first.label
    assert any("missed a deadline" in n for n in notes)


def test_the_spend_is_read_only_when_a_paying_server_is_up() -> None:
    calls: list[int] = []

    def spent() -> float:
        calls.append(1)
        return 5.0

    choose(cls("code"), LAB, CFG, spent_today=spent)
    assert calls == []  # no cloud server: the usage log is never read
    from labrouter.core.config import parse_config
    cfg = parse_config('[routes.code]\nmodels = ["gpt-5-mini"]\nallow_cloud = true\n'
                       '[budget]\ndaily_usd = 2.0\n')
    cloud = peer("mac", server([m("gpt-5-mini")], sid="cloud", cost_input_per_1k=0.001),
                 is_self=True)
    assert "gpt-5-mini on mac" not in labels(choose(cls("code"), [cloud], cfg,
                                                    spent_today=spent))
    assert calls == [1]
