"""Run the benchmarks and write their results: ``python -m bench.run [--smoke] [--runs N] [--only KEY,...]``.

Each scenario runs ``--runs`` times (5 by default, 1 for ``--smoke``, which also shrinks every scenario to a tenth
of its size); the report gives each metric's median and spread (min..max over the runs), checks each goal, and
describes the machine, with its load average at the start and the end.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import statistics
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import harness
from bench.scenario import Scenario, Values

ORDER = ["burst", "fairness", "herd", "slots", "streaming", "overhead", "scale", "decode_peaks"]
HERE = Path(__file__).resolve().parent


def load(key: str) -> Scenario:
    found: Scenario = importlib.import_module(f"bench.{key}").SCENARIO
    return found


def summarize(runs: list[Values]) -> tuple[Values, Values, Values]:
    """Per metric: median, min and max over the runs that measured it."""
    medians: Values = {}
    lows: Values = {}
    highs: Values = {}
    for key in {k for r in runs for k in r}:
        found = [float(v) for r in runs if (v := r.get(key)) is not None]
        medians[key] = statistics.median(found) if found else None
        lows[key] = min(found) if found else None
        highs[key] = max(found) if found else None
    return medians, lows, highs


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "not measured"
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def render(results: list[tuple[Scenario, list[Values], str | None]], smoke: bool, runs: int,
           load_start: str, load_end: str, started: datetime, seconds: float,
           commit: str) -> tuple[str, bool, list[str]]:
    box = harness.machine()
    lines = [
        "# recplay benchmarks" + (" (smoke: a tenth of the size, one run)" if smoke else ""),
        "",
        f"Written by `{'make bench-smoke' if smoke else 'make bench'}` on {started:%Y-%m-%d %H:%M} UTC in "
        f"{seconds / 60:.1f} min, measuring commit {commit}; each scenario ran {runs} "
        f"time{'s' if runs > 1 else ''}. Median of the runs, spread = min..max.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| nproc | {box['nproc']} |",
        f"| CPU | {box['cpu']} |",
        f"| memory | {box['memory']} |",
        f"| Python, kernel | {box['python']}, {box['kernel']} |",
        f"| load average (1, 5, 15 min) at start | {load_start} |",
        f"| load average (1, 5, 15 min) at end | {load_end} |",
        "",
        "Load generators run as their own processes on the same cores as the system under test; their CPU use is "
        "in each table.",
        "",
        "## Goals",
        "",
        "| scenario | goal | median | met |",
        "|---|---|---|---|",
    ]
    all_met = True
    broken: list[str] = []
    sections: list[str] = []
    for scenario, values, error in results:
        medians, lows, highs = summarize(values)
        for goal in scenario.goals:
            verdict = None if error else goal.check(medians, values)
            all_met = all_met and verdict is True  # a goal that errored or was not measured is not met
            if goal.invariant and verdict is False:
                broken.append(f"{scenario.title}: {goal.text}")
            key = _goal_key(goal.check)
            shown = fmt(medians.get(key), 3) if key else ""
            mark = "**error**" if error else {True: "yes", False: "**no**", None: "not measured"}[verdict]
            lines.append(f"| {scenario.title} | {goal.text} | {shown} | {mark} |")
        sections += ["", f"## {scenario.title}", "", (scenario.smoke_setup if smoke else scenario.setup), ""]
        if error:
            sections += ["```", error.strip()[-3000:], "```", ""]
        sections += ["| metric | median | spread | unit |", "|---|---|---|---|"]
        for m in scenario.metrics:
            med = medians.get(m.key)
            spread = "" if med is None else f"{fmt(lows[m.key], m.digits)}..{fmt(highs[m.key], m.digits)}"
            sections.append(f"| {m.label} | {fmt(med, m.digits)} | {spread} | {m.unit} |")
        for note in dict.fromkeys(scenario.notes):
            sections += ["", note]
    findings = HERE / "FINDINGS.md"
    if not smoke and findings.exists():
        sections += ["", findings.read_text().rstrip()]
    if broken:
        lines += ["", "**Invariants broken** (the run fails): " + "; ".join(broken) + "."]
    return "\n".join(lines + sections) + "\n", all_met and not broken, broken


def _goal_key(check: object) -> str | None:
    # The metric a goal helper looks at, for the goals table (closures made by bench.scenario keep it).
    closure = getattr(check, "__closure__", None) or ()
    for cell in closure:
        if isinstance(cell.cell_contents, str):
            return cell.cell_contents
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--smoke", action="store_true", help="a tenth of each scenario, one run")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--only", default="", help="comma-separated scenario keys: " + ",".join(ORDER))
    parser.add_argument("--out", default=None)
    parser.add_argument("--render", metavar="JSON", help="only write the report again from a run's saved values")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    runs = args.runs or (1 if args.smoke else 5)
    keys = [k for k in args.only.split(",") if k] or ORDER
    out = Path(args.out) if args.out else (HERE / "out" / "RESULTS-smoke.md" if args.smoke else HERE / "RESULTS.md")
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        results = [(load(key), values, error) for key, values, error in saved["results"]]
        # The commit the values were measured on (saved with them), not the one the report is written from.
        text, _, _ = render(results, saved["smoke"], saved["runs"], saved["load_start"], saved["load_end"],
                         datetime.fromisoformat(saved["started"]), saved["seconds"], saved["commit"])
        out.write_text(text)
        print(f"wrote {out}")
        return 0
    started, clock = datetime.now(UTC), time.monotonic()
    load_start, commit = harness.load_average(), harness.commit()
    results = []
    failed = False
    for key in keys:
        scenario = load(key)
        values: list[Values] = []
        error = None
        for i in range(runs):
            t = time.monotonic()
            try:
                values.append(scenario.run(args.smoke))
            except Exception:
                error = traceback.format_exc()
                failed = True
                print(f"{key} run {i + 1}/{runs} failed:\n{error}", file=sys.stderr, flush=True)
                break
            shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in values[-1].items()}
            print(f"{key} run {i + 1}/{runs} ({time.monotonic() - t:.1f}s): {shown}", flush=True)
        results.append((scenario, values, error))
    load_end, seconds = harness.load_average(), time.monotonic() - clock
    text, all_met, broken = render(results, args.smoke, runs, load_start, load_end, started, seconds, commit)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The values go beside the report: a run written elsewhere (--out) never replaces the saved values of the
    # report in bench/ (--render writes that report again from them).
    saved_path = (out.with_suffix(".json") if args.out
                  else HERE / "out" / f"results{'-smoke' if args.smoke else ''}.json")
    saved_path.parent.mkdir(parents=True, exist_ok=True)
    saved_path.write_text(json.dumps({
        "results": [(sc.key, values, error) for sc, values, error in results], "smoke": args.smoke, "runs": runs,
        "load_start": load_start, "load_end": load_end, "started": started.isoformat(), "seconds": seconds,
        "commit": commit,
    }))
    out.write_text(text)
    print(f"\nwrote {out} (values in {saved_path}) in {seconds:.0f}s; every goal met: {all_met}")
    # A speed goal not met is a finding, not a failure; a scenario that could not run, or a broken invariant, is.
    if broken:
        print(f"invariants broken: {'; '.join(broken)}", file=sys.stderr)
    return 1 if failed or broken else 0


if __name__ == "__main__":
    sys.exit(main())
