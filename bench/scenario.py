"""What a scenario declares: its metrics, its goals (checked on the medians), and how one run is measured."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Values = dict[str, float | None]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str = ""
    digits: int = 3


@dataclass(frozen=True)
class Goal:
    """A goal; ``check(medians, runs)`` returns True (met), False (not met) or None (not measured).

    An ``invariant`` is not about speed (no duplicate download, never over the limit, every client served): when
    one is broken the run fails, so ``make bench-smoke`` (and CI) fails with it. A speed goal not met is a finding.
    """

    text: str
    check: Callable[[Values, list[Values]], bool | None]
    invariant: bool = False


def invariant(text: str, check: Callable[[Values, list[Values]], bool | None]) -> Goal:
    return Goal(text, check, invariant=True)


@dataclass
class Scenario:
    key: str
    title: str
    setup: str  # what one run does, full size
    smoke_setup: str
    metrics: list[Metric]
    goals: list[Goal]
    run: Callable[[bool], Values]
    notes: list[str] = field(default_factory=list)  # filled by runs (e.g. why something was not measured)


def spec_file(data: dict[str, Any]) -> str:
    """Write a load generator's spec to a temporary file; returns its path."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="recplay-bench-spec-", delete=False) as f:
        json.dump(data, f)
    return f.name


def remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)


def at_most(key: str, bound: float) -> Callable[[Values, list[Values]], bool | None]:
    """The median is at most ``bound``."""
    def check(medians: Values, runs: list[Values]) -> bool | None:
        value = medians.get(key)
        return None if value is None else value <= bound
    return check


def at_least(key: str, bound: float) -> Callable[[Values, list[Values]], bool | None]:
    """The median is at least ``bound``."""
    def check(medians: Values, runs: list[Values]) -> bool | None:
        value = medians.get(key)
        return None if value is None else value >= bound
    return check


def every_run(key: str, wanted: float) -> Callable[[Values, list[Values]], bool | None]:
    """Every run measured exactly ``wanted``."""
    def check(medians: Values, runs: list[Values]) -> bool | None:
        found = [r.get(key) for r in runs if r.get(key) is not None]
        return None if not found else all(v == wanted for v in found)
    return check
