"""What the decode child runs in the isolation tests: a decoder that crashes, hangs, allocates or misbehaves.

``tasks.media.sandbox.run_isolated`` has a decoder import these by name, so this module imports nothing heavy.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def kill_self(signum: int) -> None:
    os.kill(os.getpid(), signum)


def hang(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    threading.Event().wait()  # never set: a decoder stuck in a loop


def allocate(size: int) -> int:
    return len(bytearray(size))


def exit_quietly(code: int) -> None:
    os._exit(code)


def fail() -> None:
    raise RuntimeError("a decoder bug")
