"""The benchmark report's verdicts: `make bench` says every goal was met only when each one was measured and met."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.run import render
from bench.scenario import Goal, Metric, Scenario, at_least, every_run, invariant


def scenario(*goals: Goal) -> Scenario:
    return Scenario(key="demo", title="Demo", setup="one run", smoke_setup="one run",
                    metrics=[Metric("rate", "rate", "/s"), Metric("duplicates", "duplicates", "")],
                    goals=list(goals), run=lambda smoke: {})


def report(sc: Scenario, values: list[dict], error: str | None = None) -> tuple[str, bool, list[str]]:
    return render([(sc, values, error)], False, len(values) or 1, "0 0 0", "0 0 0", datetime.now(UTC), 1.0, "abc")


def test_every_goal_met_only_when_each_was_measured_and_met():
    sc = scenario(Goal("rate >= 10", at_least("rate", 10)),
                  invariant("no duplicate download", every_run("duplicates", 0)))
    text, met, broken = report(sc, [{"rate": 12.0, "duplicates": 0}])
    assert (met, broken) == (True, [])
    assert "| Demo | rate >= 10 | 12 | yes |" in text

    _, met, broken = report(sc, [{"rate": 9.0, "duplicates": 0}])
    assert (met, broken) == (False, [])  # a speed goal missed: a finding, not a broken invariant

    _, met, broken = report(sc, [{"rate": 12.0, "duplicates": 1}])
    assert (met, broken) == (False, ["Demo: no duplicate download"])


def test_a_scenario_that_failed_or_measured_nothing_has_not_met_its_goals():
    sc = scenario(Goal("rate >= 10", at_least("rate", 10)))
    text, met, _ = report(sc, [], error="Traceback: the API did not start")
    assert met is False
    assert "| Demo | rate >= 10 | not measured | **error** |" in text
    text, met, _ = report(sc, [{"duplicates": 0}])  # the rate was not measured on this commit
    assert met is False
    assert "| Demo | rate >= 10 | not measured | not measured |" in text
