"""Decoders in processes of their own, under limits, reused.

FFmpeg parses hostile input in C (:mod:`tasks.media.decode`). A crash, a runaway allocation or an endless loop in
it must cost one attempt, never the Celery worker that asked, so :func:`decode_audio` sends the decode to a
decoder process:

- Started from multiprocessing's forkserver, which preloads :mod:`tasks.media.decode` (and with it PyAV and numpy):
  a fork from it costs a few milliseconds where a fresh interpreter importing PyAV and numpy costs 0.3 s or more,
  and it inherits none of the worker's threads, locks or sockets. A daemonic process (a Celery prefork pool child)
  may not start multiprocessing children: it starts ``python -m tasks.media.sandbox`` instead, which serves the
  same way.
- Under limits: its address space (``RLIMIT_AS``: its size when it starts plus ``max_memory_bytes``) and its core
  dumps once; its CPU time before each decode (a backstop that ends an orphan whose parent died). The caller
  waits at most ``max_seconds`` for each answer and then kills the process.
- Reused: starting a process per decode cost about 14 ms of CPU against 0.4 ms for decoding a short call, most of
  a recording's CPU in the worker. A decoder serves at most :data:`MAX_USES` decodes, is retired after any answer
  but a decoded recording (a refusal, an error, a timeout), and after :data:`IDLE_SECONDS` without work.
- What it is not: a boundary against code that an exploit of FFmpeg would run. The decoder runs as the worker's
  user, with its files and its environment in reach, whether it serves one decode or many (a decoder per business
  was tried: with many businesses it is a new process for nearly every download, and it kept nothing out that
  the same user could not read anyway). That boundary needs another user, namespaces or seccomp around it.
- Answers are JSON in both directions, never a pickle: the process ran hostile input.

Failures of the attempt rather than of the body raise ``DecodeFailed``: the decoder timed out, ran out of memory,
died by a signal or exited without answering. They are transient: the machine may have been loaded or short of
memory, or the worker shutting down, so the caller may retry; a body that crashes or outgrows the decoder every
time fails every attempt and so exhausts the caller's attempt budget instead of being refused on a first, possibly
unlucky, try. Linux only: a decoder reads its size from /proc.
"""

from __future__ import annotations

import atexit
import base64
import dataclasses
import importlib
import json
import logging
import math
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_readable
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

from tasks.media.decode import SNIFF_BYTES, DecodedMedia, DecodeFailed, NotAudio, decode_in_process, sniff_not_media

log = logging.getLogger(__name__)

#: Decodes one decoder process serves before it is retired (it may have grown or fragmented its memory).
MAX_USES = 200
#: A decoder idle this long is retired.
IDLE_SECONDS = 60.0
#: Idle decoders kept per worker process, the least recently used retired first.
MAX_IDLE = 16
_JOIN_GRACE_SECONDS = 5.0
_THIS_MODULE = __spec__.name if __spec__ is not None else __name__


# --- in the decoder process ------------------------------------------------------------------------------------


def _address_space_bytes() -> int:
    """This process's current virtual size (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _lower_limit(which: int, soft: int, hard: int) -> None:
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(which, (soft, hard))


def _cpu_budget(max_seconds: float) -> None:
    """CPU time from now: the caller's wall clock kills first; this ends an orphan whose parent died mid-decode."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    budget = math.ceil(usage.ru_utime + usage.ru_stime + max_seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (budget if hard == resource.RLIM_INFINITY else min(budget, hard), hard))


def _function(name: str) -> Callable[..., Any]:
    module, _, qualname = name.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _as_json(value: Any) -> Any:
    if isinstance(value, DecodedMedia):
        return {**dataclasses.asdict(value), "peaks": base64.b64encode(value.peaks).decode()}
    return value


def _decode(path: str) -> DecodedMedia:
    return decode_in_process(Path(path))


_DECODE = f"{_THIS_MODULE}:{_decode.__qualname__}"


def serve(reader: Connection, writer: Connection, max_memory_bytes: int) -> None:
    """The decoder's loop: one JSON request (``{"fn", "args", "max_seconds"}``) in, one JSON answer out
    (``{"ok": value}``, ``{"not_audio": what}`` or ``{"failed": [reason, detail]}``), until the caller closes
    its end or an answer is not ``ok``."""
    limit = _address_space_bytes() + max_memory_bytes
    _lower_limit(resource.RLIMIT_AS, limit, limit)
    _lower_limit(resource.RLIMIT_CORE, 0, 0)
    while True:
        try:
            request = json.loads(reader.recv_bytes())
        except EOFError:
            return
        _cpu_budget(request["max_seconds"])
        answer: dict[str, Any]
        try:
            answer = {"ok": _as_json(_function(request["fn"])(*request["args"]))}
        except NotAudio as exc:
            answer = {"not_audio": exc.what}
        except MemoryError as exc:
            answer = {"failed": ["memory", f"the decoder ran out of its {max_memory_bytes} bytes of memory ({exc!r})"]}
        except Exception as exc:
            answer = {"failed": ["error", f"{type(exc).__name__}: {exc}"]}
        try:
            writer.send_bytes(json.dumps(answer).encode())
        except MemoryError:
            os._exit(3)  # no memory left to say why: the caller reports an exit without an answer
        if "ok" not in answer:
            return


def _serve_forked(reader: Connection, writer: Connection, max_memory_bytes: int) -> None:
    serve(reader, writer, max_memory_bytes)
    writer.close()


# --- in the worker ------------------------------------------------------------------------------------------------

_context_lock = threading.Lock()
_context: ForkServerContext | None = None


def _mp_context() -> ForkServerContext:
    """The forkserver context, its server told (once, before it starts) to preload the decoder."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            # '__main__' as multiprocessing's default does, so that each child need not import the main module anew;
            # tasks.media.warm imports this module and decodes once (lazy imports, first calls) before any fork.
            ctx.set_forkserver_preload(["__main__", "tasks.media.warm"])
            _context = ctx
        return _context


class Decoder:
    """One decoder process and the caller's ends of its two pipes."""

    def __init__(self, max_memory_bytes: int) -> None:
        self.max_memory_bytes = max_memory_bytes
        self.uses = 0
        self.last_used = time.monotonic()
        self.exitcode: int | None = None  # once reaped
        self._closed = False
        self._proc: Any
        if multiprocessing.current_process().daemon:
            self._start_interpreter()
        else:
            ctx = _mp_context()
            child_reader, self.writer = ctx.Pipe(duplex=False)
            self.reader, child_writer = ctx.Pipe(duplex=False)
            self._proc = ctx.Process(target=_serve_forked, args=(child_reader, child_writer, max_memory_bytes),
                                     name="recplay-decoder", daemon=True)
            try:
                self._proc.start()
            finally:
                child_reader.close()
                child_writer.close()
        self.pid: int = self._proc.pid

    def _start_interpreter(self) -> None:
        child_reader, writer = os.pipe()
        reader, child_writer = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", _THIS_MODULE, str(child_reader), str(child_writer), str(self.max_memory_bytes)],
                pass_fds=(child_reader, child_writer), stdin=subprocess.DEVNULL)
        except BaseException:
            for fd in (reader, writer):
                os.close(fd)
            raise
        finally:
            os.close(child_reader)
            os.close(child_writer)
        self.reader, self.writer = Connection(reader, writable=False), Connection(writer, readable=False)

    def alive(self) -> bool:
        if self.exitcode is not None or self._closed:
            return False
        if isinstance(self._proc, subprocess.Popen):
            return self._proc.poll() is None
        return bool(self._proc.is_alive())

    def call(self, fn: str, args: list[Any], max_seconds: float) -> Any:
        """``fn(*args)`` in the decoder; its JSON value.

        Raises:
            NotAudio: ``fn`` raised it (the decoder then exits; retire it).
            DecodeFailed: it ran out of time (it is killed) or memory, died, or raised anything else.
        """
        self.uses += 1
        try:
            self.writer.send_bytes(json.dumps({"fn": fn, "args": args, "max_seconds": max_seconds}).encode())
        except OSError:
            raise DecodeFailed(*self._exit()) from None
        answer = self._answer(time.monotonic() + max_seconds, max_seconds)
        self.last_used = time.monotonic()
        if "ok" in answer:
            return answer["ok"]
        if "not_audio" in answer:
            raise NotAudio(str(answer["not_audio"]))
        reason, detail = answer["failed"]
        raise DecodeFailed(str(reason), str(detail))

    def _answer(self, deadline: float, max_seconds: float) -> dict[str, Any]:
        """The decoder's answer, or DecodeFailed when the deadline passes or it dies without one. Only the decoder
        holds the write end of the answers' pipe, so a dead decoder leaves it at end of file: readable, and
        ``recv_bytes`` raises EOFError once any answer sent before dying has been read."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise DecodeFailed("timeout", f"the decoder ran past its {max_seconds:g} s budget and was killed")
            if wait_readable([self.reader], timeout=remaining):
                try:
                    answer = json.loads(self.reader.recv_bytes())
                except (EOFError, OSError):
                    raise DecodeFailed(*self._exit()) from None
                if not isinstance(answer, dict):
                    self.kill()
                    raise DecodeFailed("error", "the decoder sent something other than an answer")
                return answer

    def _exit(self) -> tuple[str, str]:
        """Why the decoder stopped without answering (it is reaped)."""
        self.close()
        code = self.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            cause = {"SIGKILL": " (a memory or time limit, the OOM killer or an operator)",
                     "SIGXCPU": " (its CPU time limit)"}.get(name, "")
            return "signal", f"the decoder died by {name}{cause}"
        return "exit", f"the decoder exited with code {code} without an answer"

    def kill(self) -> None:
        if self.alive():
            self._proc.kill()
        self.close()

    def close(self) -> None:
        """Retire it: it sees the end of its requests and exits; one that lingers is killed. Never leaves a zombie
        or a running decoder behind."""
        if self._closed:
            return
        self._closed = True
        self.writer.close()
        self.reader.close()
        proc = self._proc
        if isinstance(proc, subprocess.Popen):
            try:
                proc.wait(_JOIN_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.exitcode = proc.returncode
            return
        proc.join(_JOIN_GRACE_SECONDS)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
        self.exitcode = proc.exitcode
        proc.close()


class DecoderPool:
    """The idle decoders of this process, least recently used first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[Decoder] = []
        self.pid = os.getpid()

    def take(self, max_memory_bytes: int) -> Decoder:
        """The most recently used idle decoder of this memory budget that is still alive, or a new one."""
        with self.lock:
            if self.pid != os.getpid():  # a forked child (a prefork pool process): the decoders are the parent's
                self.idle, self.pid = [], os.getpid()
            retired = self._expired()
            found = next((d for d in reversed(self.idle) if d.max_memory_bytes == max_memory_bytes), None)
            if found is not None:
                self.idle.remove(found)
        for decoder in retired:
            decoder.close()
        if found is not None and found.alive():
            return found
        if found is not None:
            found.close()
        return Decoder(max_memory_bytes)

    def give_back(self, decoder: Decoder) -> None:
        if decoder.uses >= MAX_USES or self.pid != os.getpid():
            decoder.close()
            return
        with self.lock:
            self.idle.append(decoder)
            retired = self._expired()
            while len(self.idle) > MAX_IDLE:
                retired.append(self.idle.pop(0))
        for old in retired:
            old.close()

    def _expired(self) -> list[Decoder]:
        """Take out the decoders idle for too long (the caller holds the lock, and closes them)."""
        stale = [d for d in self.idle if time.monotonic() - d.last_used > IDLE_SECONDS]
        self.idle = [d for d in self.idle if d not in stale]
        return stale

    def close(self) -> None:
        with self.lock:
            everyone = self.idle if self.pid == os.getpid() else []
            self.idle = []
        for decoder in everyone:
            decoder.close()


_pool = DecoderPool()
atexit.register(_pool.close)


def decode_audio(path: Path, *, max_seconds: float, max_memory_bytes: int) -> DecodedMedia:
    """Prove that ``path`` is audio in an allowed format by decoding all of it, in a decoder process.

    Args:
        path: the downloaded body, complete.
        max_seconds: wall-clock budget of the decode; the decoder is killed past it.
        max_memory_bytes: memory the decoder may add to its size when it started (its ``RLIMIT_AS`` is the sum).

    Returns:
        The detected format, its content type and extension, the decoded duration and shape, and the peaks.

    Raises:
        NotAudio: permanent; the body is not audio we serve (see :mod:`tasks.media.decode`).
        DecodeFailed: transient; the attempt failed (timeout, memory, a signal, an exit without answer, an error).
        OSError: ``path`` cannot be read by this process, or no decoder could be started.
    """
    if max_seconds <= 0 or max_memory_bytes <= 0:
        raise ValueError(f"max_seconds ({max_seconds}) and max_memory_bytes ({max_memory_bytes}) must be positive")
    started = time.monotonic()
    with path.open("rb") as f:
        what = sniff_not_media(f.read(SNIFF_BYTES))  # the commonest junk costs no decoder
    try:
        if what is not None:
            raise NotAudio(what)
        fields = _decode_in_pool(path, max_seconds, max_memory_bytes)
        media = DecodedMedia(**{**fields, "peaks": base64.b64decode(fields["peaks"])})
    except NotAudio as exc:
        log.info("refused %s: %s", path.name, exc)
        raise
    except DecodeFailed as exc:
        log.warning("decode of %s failed: %s", path.name, exc)
        raise
    log.info("decoded %s: %s %s, %.2f s, %d ch at %d Hz, in %.3f s", path.name, media.format, media.codec,
             media.duration_seconds, media.channels, media.sample_rate, time.monotonic() - started)
    return media


def _decode_in_pool(path: Path, max_seconds: float, max_memory_bytes: int) -> Any:
    """The decoded fields, from an idle decoder or a new one. A reused decoder that died while
    idle (the OOM killer, an operator) may not be seen dead yet when taken: if it ends without answering, a new
    decoder is asked once more."""
    decoder = _pool.take(max_memory_bytes)
    reused = decoder.uses > 0
    try:
        fields = _ask(decoder, path, max_seconds)
    except DecodeFailed as exc:
        if not reused or exc.reason not in ("signal", "exit"):
            raise
        log.info("an idle decoder had died (%s); asking a new one", exc.detail)
        decoder = Decoder(max_memory_bytes)
        fields = _ask(decoder, path, max_seconds)
    _pool.give_back(decoder)
    return fields


def _ask(decoder: Decoder, path: Path, max_seconds: float) -> Any:
    """The decoder's decode of ``path``; a decoder that failed or refused is retired."""
    try:
        return decoder.call(_DECODE, [str(path)], max_seconds)
    except BaseException:
        decoder.kill()
        raise


def run_isolated(fn: Callable[..., Any], args: tuple[Any, ...], *, max_seconds: float,
                 max_memory_bytes: int) -> Any:
    """``fn(*args)`` in a decoder of its own, retired after: for functions importable by name whose arguments and
    value are JSON."""
    decoder = Decoder(max_memory_bytes)
    try:
        return decoder.call(f"{fn.__module__}:{fn.__qualname__}", list(args), max_seconds)
    finally:
        decoder.kill()


def _main(argv: list[str]) -> int:
    """``python -m tasks.media.sandbox READ_FD WRITE_FD MAX_MEMORY_BYTES``: a decoder in a new interpreter."""
    reader, writer = Connection(int(argv[0]), writable=False), Connection(int(argv[1]), readable=False)
    serve(reader, writer, int(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
