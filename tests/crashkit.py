"""Helpers for the tests that kill, stop, cut and corrupt: who holds a slot, which process to hit, what got stored."""

from __future__ import annotations

import hashlib
import os
import signal
from dataclasses import dataclass
from typing import Any

import psutil

from tasks.slots import keys
from tests.conftest import WorkerProcess, wait_for


@dataclass(frozen=True)
class HolderInfo:
    fence: int
    task_id: str
    worker: str


def holder_of(rclient: Any, business_id: str, call_sid: str) -> HolderInfo | None:
    """The attempt holding (or reserved) the slot of ``call_sid``, from its holder-info entry."""
    info = rclient.hget(keys.holder_info(business_id), call_sid)
    if not info:
        return None
    fence, task_id, worker = info.split("|", 2)
    return HolderInfo(int(fence), task_id, worker)


def wait_holder(rclient: Any, business_id: str, call_sid: str, timeout: float = 20) -> HolderInfo:
    """Wait until a worker (not a reservation) holds the slot of ``call_sid``."""
    def held() -> HolderInfo | None:
        found = holder_of(rclient, business_id, call_sid)
        return found if found is not None and found.worker else None

    return wait_for(held, timeout, f"a worker to hold the slot of {business_id}/{call_sid}")  # type: ignore[no-any-return]


def node_of(holder: HolderInfo, *workers: WorkerProcess) -> WorkerProcess:
    """The worker process whose node name is in ``holder``."""
    for worker in workers:
        if holder.worker == f"{worker.name}@127.0.0.1":
            return worker
    raise AssertionError(f"no worker named {holder.worker!r}")


def others(victim: WorkerProcess, *workers: WorkerProcess) -> list[WorkerProcess]:
    return [w for w in workers if w is not victim]


def pool_children(worker: WorkerProcess) -> list[psutil.Process]:
    return psutil.Process(worker.pid).children()


def child_talking_to(worker: WorkerProcess, port: int, timeout: float = 20) -> psutil.Process:
    """The prefork pool child of ``worker`` with a TCP connection open to ``port`` (the provider)."""
    def find() -> psutil.Process | None:
        for child in pool_children(worker):
            try:
                if any(c.raddr and c.raddr.port == port for c in child.net_connections(kind="tcp")):
                    return child
            except psutil.NoSuchProcess:
                continue
        return None

    return wait_for(find, timeout, "a pool child talking to the provider")  # type: ignore[no-any-return]


def stop(worker: WorkerProcess) -> None:
    """SIGSTOP the whole worker (every thread, every child): a process paused by the OS, a VM or a debugger."""
    os.killpg(worker.pid, signal.SIGSTOP)


def cont(worker: WorkerProcess) -> None:
    os.killpg(worker.pid, signal.SIGCONT)


def stored(settings: Any, business_id: str, call_sid: str) -> tuple[Any, bytes | None]:
    """The catalog row of a recording and the bytes of its stored file (None when there is none)."""
    from tasks.catalog.queries import Catalog
    from tasks.media.local import MediaStore

    rec = Catalog(settings).get(business_id, call_sid)
    store = MediaStore(settings.media_dir)
    if rec is None or not store.exists(rec.file_path):
        return rec, None
    return rec, store.path(rec.file_path).read_bytes()


def assert_stored_whole(settings: Any, business_id: str, call_sid: str, body: bytes) -> None:
    """The recording is ready and its file is exactly ``body``, with the catalog's size and checksum."""
    rec, data = stored(settings, business_id, call_sid)
    assert rec is not None and rec.state == "ready", rec
    assert data == body
    assert rec.size_bytes == len(body)
    assert rec.sha256 == hashlib.sha256(body).hexdigest()


def media_files(settings: Any, business_id: str) -> list[str]:
    """Every file of a business in the store, temporary ones included."""
    root = settings.media_dir / business_id
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def whole_files(settings: Any, business_id: str) -> list[str]:
    """The files of a business that readers can see (temporary ones, written aside, start with a dot)."""
    return [name for name in media_files(settings, business_id) if not name.startswith(".")]


def queued_messages(rclient: Any, queues: tuple[str, ...] = ("recplay-handoff", "recplay"),
                    ) -> list[tuple[str, str, list[Any]]]:
    """The (task name, task id, args) of every message waiting in the broker's download queues (hand-offs
    first, as workers read them), oldest first."""
    import base64
    import json

    found = []
    for raw in [m for queue in queues for m in reversed(rclient.lrange(queue, 0, -1))]:
        message = json.loads(raw)
        headers = message["headers"]
        body = json.loads(base64.b64decode(message["body"]))
        found.append((headers["task"], headers["id"], body[0]))
    return found


def queued_task_ids(rclient: Any, call_sid: str) -> list[str]:
    """The task ids of the download messages waiting for ``call_sid``."""
    return [task_id for name, task_id, args in queued_messages(rclient)
            if name == "tasks.download" and args[1] == call_sid]
