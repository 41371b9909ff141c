"""Load generators, run as their own process so their CPU use is visible (``python -m bench.client KIND SPEC``).

Each kind reads a JSON spec file and prints one JSON object, with the process's own ``cpu_seconds`` (user +
system) and ``wall_seconds``. Times are wall-clock seconds (``time.time()``), comparable with Redis ``TIME``
and the provider's timestamps on the same machine.

Kinds:
  burst   every request at once, each on a new connection, from one thread: POST .../fetch
  flood   POST .../fetch for every call_sid from a small thread pool, as fast as the API answers
  paced   POST .../fetch for call_sid i at start + i * interval
  herd    many clients at once GET one URL, polling while it answers 202 (honouring Retry-After), and note when
          each one's first body byte arrived
  herd_events  many clients at once, as the player: POST .../fetch, wait on .../events until `ready`, then GET
          the event's stream_url with the Range; note when each one's first body byte arrived
  noop    send bare no-op Celery tasks (the peer of the overhead scenario)
"""

from __future__ import annotations

import http.client
import json
import resource
import selectors
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import requests

_local = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def _fetch(base: str, token: str, call_sid: str, session: requests.Session | None = None) -> int:
    r = (session or _session()).post(f"{base}/api/recordings/{call_sid}/fetch",
                                     headers={"Authorization": f"Bearer {token}"}, timeout=120)
    return r.status_code


def burst(spec: dict[str, Any]) -> dict[str, Any]:
    """Every request at once, each on a connection of its own opened at the release, all from one thread through
    non-blocking sockets: the load generator shares the two cores with the API and the worker, so it should take
    as little of them as it can. With a thread per request through ``http.client`` the process spent 0.74 s of
    CPU (median of five runs on a slow machine), 0.28 s of it starting before the release; this way 0.37 s.
    Statuses count answers by code, -1 for a connection refused or closed before a whole answer."""
    base, tokens, wanted = spec["base"], spec["tokens"], spec["requests"]
    parts = urlsplit(base)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    # The bytes http.client sends for the same request, built before the release.
    payloads = [(f"POST /api/recordings/{call_sid}/fetch HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                 f"Accept-Encoding: identity\r\nAuthorization: Bearer {tokens[business_id]}\r\n"
                 "Content-Length: 0\r\n\r\n").encode() for business_id, call_sid in wanted]
    statuses: list[int] = [-1] * len(wanted)
    finished: list[float] = [0.0] * len(wanted)
    pending: dict[int, bytearray] = {}
    deadline = time.monotonic() + 120
    selector = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    started = time.time()
    for i in range(len(wanted)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        socks.append(sock)
        sock.setblocking(False)
        sock.connect_ex(address)  # in progress: writable once connected
        selector.register(sock, selectors.EVENT_WRITE, i)
    while selector.get_map() and time.monotonic() < deadline:
        for key, events in selector.select(timeout=1.0):
            i = key.data
            sock = socks[i]
            try:
                if events & selectors.EVENT_WRITE:
                    sent = sock.send(payloads[i])  # a few hundred bytes: one send
                    if sent != len(payloads[i]):
                        raise OSError(f"sent {sent} of {len(payloads[i])} bytes")
                    pending[i] = bytearray()
                    selector.modify(sock, selectors.EVENT_READ, i)
                    continue
                chunk = sock.recv(65536)
                pending[i] += chunk
                status = _complete_status(bytes(pending[i]), closed=not chunk)
                if status is None:
                    continue
                statuses[i] = status
            except OSError:
                statuses[i] = -1
            finished[i] = time.time()
            selector.unregister(sock)
            sock.close()
    selector.close()
    for sock in socks:
        sock.close()  # (those that did not answer in time; closing twice is harmless)
    return {"started": started, "statuses": _count(statuses), "last_answer": max(finished)}


def _complete_status(data: bytes, closed: bool) -> int | None:
    """The status of a whole HTTP/1.1 response in ``data`` (its headers and ``Content-Length`` bytes of body),
    None while it is not whole; -1 for a connection closed before it was."""
    head, found, body = data.partition(b"\r\n\r\n")
    if found:
        lines = head.split(b"\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in lines[1:]
                       if line.lower().startswith(b"content-length:")), None)
        if (length is not None and len(body) >= length) or (length is None and closed):
            return int(lines[0].split(b" ", 2)[1])
    return -1 if closed else None


def flood(spec: dict[str, Any]) -> dict[str, Any]:
    base, tokens = spec["base"], spec["tokens"]
    started = time.time()
    with ThreadPoolExecutor(spec.get("threads", 8)) as pool:
        statuses = list(pool.map(lambda r: _fetch(base, tokens[r[0]], r[1]), spec["requests"]))
    return {"started": started, "ended": time.time(), "statuses": _count(statuses)}


def paced(spec: dict[str, Any]) -> dict[str, Any]:
    base, token, interval = spec["base"], spec["token"], float(spec["interval"])
    session = requests.Session()
    start = float(spec.get("start_at") or time.time())
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    statuses = []
    for i, call_sid in enumerate(spec["call_sids"]):
        delay = start + i * interval - time.time()
        if delay > 0:
            time.sleep(delay)
        sent[call_sid] = time.time()
        statuses.append(_fetch(base, token, call_sid, session))
        answered[call_sid] = time.time()
    return {"sent": sent, "answered": answered, "statuses": _count(statuses)}


def herd(spec: dict[str, Any]) -> dict[str, Any]:
    url, headers, clients = spec["url"], spec.get("headers", {}), int(spec["clients"])
    barrier = threading.Barrier(clients + 1)
    first_byte: list[float] = [0.0] * clients
    polls: list[int] = [0] * clients
    sizes: list[int] = [0] * clients
    statuses: list[int] = [0] * clients
    deadline = time.time() + float(spec.get("timeout", 120))

    def one(i: int) -> None:
        session = requests.Session()
        barrier.wait()
        while time.time() < deadline:
            polls[i] += 1
            try:
                with session.get(url, headers=headers, stream=True, timeout=120) as r:
                    if r.status_code == 202:
                        r.content  # noqa: B018 - drain the status body so the connection is reused
                        time.sleep(float(r.headers.get("Retry-After", "1")))
                        continue
                    first = r.raw.read(1)
                    first_byte[i] = time.time()
                    sizes[i] = len(first) + len(r.raw.read())
                    statuses[i] = r.status_code
                    return
            except requests.RequestException:
                statuses[i] = -1
                time.sleep(0.1)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    started = time.time()
    barrier.wait()
    for t in threads:
        t.join()
    return {"started": started, "first_byte": first_byte, "polls": polls, "sizes": sizes,
            "statuses": _count(statuses)}


def herd_events(spec: dict[str, Any]) -> dict[str, Any]:
    base, call_sid, headers = spec["base"], spec["call_sid"], spec.get("headers", {})
    auth = {"Authorization": f"Bearer {spec['token']}"}
    clients = int(spec["clients"])
    parts = urlsplit(base)
    barrier = threading.Barrier(clients + 1)
    first_byte: list[float] = [0.0] * clients
    polls: list[int] = [0] * clients
    sizes: list[int] = [0] * clients
    statuses: list[int] = [0] * clients
    timeout = float(spec.get("timeout", 120))

    def one(i: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            barrier.wait()
            conn.request("POST", f"/api/recordings/{call_sid}/fetch", headers=auth)
            conn.getresponse().read()
            conn.request("GET", f"/api/recordings/{call_sid}/events", headers=auth)
            polls[i] = 2
            events = conn.getresponse()
            link = None
            while link is None and (line := events.readline()):
                if line.startswith(b"data:"):
                    status = json.loads(line[5:])
                    if status["status"] in ("ready", "failed"):
                        link = status["stream_url"] or ""
            events.read()  # the server ends the stream after `ready`: the connection is free again, as a browser's
            if not link:
                statuses[i] = -1
                return
            conn.request("GET", link, headers=headers)
            polls[i] = 3
            media = conn.getresponse()
            first = media.read(1)
            first_byte[i] = time.time()
            sizes[i] = len(first) + len(media.read())
            statuses[i] = media.status
        except OSError:
            statuses[i] = -1
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    started = time.time()
    barrier.wait()
    for t in threads:
        t.join()
    return {"started": started, "first_byte": first_byte, "polls": polls, "sizes": sizes,
            "statuses": _count(statuses)}


def noop(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.noop_app import app

    count = int(spec["count"])
    started = time.time()
    with ThreadPoolExecutor(spec.get("threads", 8)) as pool:
        list(pool.map(lambda n: app.send_task("bench.noop", args=[n]), range(count)))
    return {"started": started, "ended": time.time()}


def _count(statuses: list[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in statuses:
        counts[str(s)] = counts.get(str(s), 0) + 1
    return counts


KINDS = {"burst": burst, "flood": flood, "paced": paced, "herd": herd, "herd_events": herd_events, "noop": noop}


def main(argv: list[str]) -> int:
    kind, spec_path = argv
    with open(spec_path) as f:
        spec = json.load(f)
    wall = time.monotonic()
    out = KINDS[kind](spec)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    out["wall_seconds"] = time.monotonic() - wall
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
