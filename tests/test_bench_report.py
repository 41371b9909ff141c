"""The benchmark report's verdicts: `make bench` says every goal was met only when each one was measured and met.
And its profiles' summaries name recplay's own functions by their place in the project, rooms included."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.profile import ROOT, frame_name, summarize
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


def test_a_profile_names_recplays_functions_by_their_place_in_the_project(tmp_path) -> None:
    assert frame_name("Attempt.run (tasks/worker/download.py:192)") == "Attempt.run (tasks/worker/download.py)"
    assert frame_name(f"answer ({ROOT}/api/media.py:88)") == "answer (api/media.py)"
    assert frame_name("get (/v/lib/python3.11/site-packages/redis/client.py:7)") == "get (redis/client.py)"
    assert frame_name("run (/usr/lib/python3.11/threading.py:9)") == "run (python3.11/threading.py)"
    collapsed = tmp_path / "demo-worker.txt"
    collapsed.write_text("process 1:\"celery\";thread (0x1);download (tasks/worker/tasks.py:9);"
                         "fetch (tasks/media/http.py:3) 3\nprocess 1:\"celery\";loop (celery/worker/loops.py:1) 1\n")
    ours = summarize(collapsed, 5).split("recplay's own functions, inclusive:\n")[1].split("  self:")[0]
    assert sorted(line.strip() for line in ours.splitlines()) == [
        "75.0%  download (tasks/worker/tasks.py)", "75.0%  fetch (tasks/media/http.py)"]
