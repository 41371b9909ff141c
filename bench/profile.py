"""Profile one scenario: ``python -m bench.profile KEY [--smoke] [--top N]``.

Runs the scenario once with py-spy sampling the API (gunicorn tree) and the worker (celery tree), then prints,
for each profile, the functions with the largest share of samples (of the thread holding the GIL, or of
every thread with BENCH_PROFILE_MODE=wall): inclusive (the function and what it
calls) and self (the function's own code). The collapsed stacks stay in bench/out/profile/ for flame graphs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from pathlib import Path

from bench.run import load

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "profile"
_LOCATION = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (dir/file.py)``, so lines of one function add up: a project file
    by its path in the project (``tasks/worker/download.py``), a package's by its path in site-packages, anything
    else by its last two parts."""
    match = _LOCATION.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    if "site-packages/" in path:
        short = path.split("site-packages/")[-1]
    elif path.startswith(f"{ROOT}/"):
        short = path[len(f"{ROOT}/"):]
    elif not path.startswith("/"):
        short = path  # already relative to the process's directory, the project's
    else:
        short = "/".join(path.split("/")[-2:])
    return f"{match.group('func')} ({short})"


def summarize(path: Path, top: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [frame_name(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        frames = [f for f in frames if f]
        for name in set(frames):
            inclusive[name] += n
        if frames:
            own[frames[-1]] += n
    if not total:
        return f"{path.name}: no samples\n"
    lines = [f"{path.name}: {total} samples", "  inclusive:"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    ours = [(name, n) for name, n in inclusive.most_common() if re.search(r"\((api|tasks)/", name)]
    lines.append("  recplay's own functions, inclusive:")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in ours[:top]]
    lines.append("  self:")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("key")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    out = OUT / args.key
    for old in out.glob("*.txt"):
        old.unlink()
    os.environ["BENCH_PROFILE"] = str(out)
    print(load(args.key).run(args.smoke))
    for path in sorted(out.glob("*.txt")):
        summary = summarize(path, args.top)
        path.with_suffix(".summary").write_text(summary)
        print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
