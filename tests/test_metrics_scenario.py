"""/metrics reports what really happened: slots, parked jobs, queue, downloads by outcome, seconds, bytes."""

from __future__ import annotations

import itertools
import threading
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tasks.slots import keys
from tests.conftest import assert_quiescent, run_cli, wait_for
from tests.provider import Behaviour, make_wav


def scrape(client: Any) -> dict[str, Any]:
    """{sample name: value} for unlabelled samples, {sample name: {label value: value}} for one label."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    found: dict[str, Any] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            labels = list(s.labels.values())
            if not labels:
                found[s.name] = s.value
            else:
                found.setdefault(s.name, {})[labels[0]] = s.value
    return found


def test_metrics_match_a_scenario(app, api_for, provider, procs, rclient):
    client = app.test_client()
    gate = threading.Event()
    audio = make_wav(0.5)
    # Given, before any worker runs: a business limited to 2 with 4 downloads held at the provider, and
    # another with one recording the provider does not have (404) and one it fails once (500).
    run_cli("set-limit", "held", "2")
    held, other = api_for("held"), api_for("other")
    jobs = [(held, f"r{i}", Behaviour(body=audio, gate=gate)) for i in range(4)]
    jobs += [(other, "gone", Behaviour(body=audio, fail_first=[404])),
             (other, "flaky", Behaviour(body=audio, fail_first=[500]))]
    for api, call_sid, behaviour in jobs:
        url = provider.add(f"/{api.business_id}/{call_sid}.wav", behaviour)
        assert api.register(call_sid, url).status_code == 201
        assert api.fetch(call_sid).status_code == 202

    m = scrape(client)
    assert m["recplay_redis_up"] == 1
    # Only the work that can run now is in the broker: each message has its slot reserved; the rest park.
    assert m["recplay_queue_length"] == 4 == rclient.llen("recplay")
    assert m["recplay_slots_limit"] == {"held": 2, "other": 5}
    assert m["recplay_slots_active"] == {"held": 2, "other": 2}
    assert m["recplay_parked_jobs"] == {"held": 2, "other": 0}
    assert m["recplay_downloads_total"] == {"ready": 0, "failed": 0, "retried": 0, "lease_lost": 0}
    assert m["recplay_download_seconds_count"] == 0

    # When a worker runs them: two downloads hold the business's slots, two jobs park, the other business's
    # jobs end (one failed for good, one ready after a retry).
    procs.worker(concurrency=4)
    assert other.wait_status("gone", {"ready", "failed"}, 30)["status"] == "failed"
    assert other.wait_status("flaky", {"ready", "failed"}, 30)["status"] == "ready"
    wait_for(lambda: provider.in_flight["held"] == 2 and rclient.zcard(keys.waiting("held")) == 2
             and rclient.llen("recplay") == 0, 30, "2 downloads in flight, 2 parked, the queue drained")
    m = scrape(client)
    assert m["recplay_queue_length"] == 0
    assert m["recplay_slots_active"] == {"held": 2, "other": 0}
    assert m["recplay_parked_jobs"] == {"held": 2, "other": 0}
    assert m["recplay_downloads_total"] == {"ready": 1, "failed": 1, "retried": 1, "lease_lost": 0}
    assert m["recplay_workers_alive"] == 1

    # Then, the gate open, every download is counted once, each with its duration.
    gate.set()
    for i in range(4):
        assert held.wait_status(f"r{i}", {"ready", "failed"}, 30)["status"] == "ready"
    assert_quiescent()
    m = scrape(client)
    assert m["recplay_slots_active"] == {"held": 0, "other": 0}
    assert m["recplay_parked_jobs"] == {"held": 0, "other": 0}
    assert m["recplay_downloads_total"] == {"ready": 5, "failed": 1, "retried": 1, "lease_lost": 0}
    assert m["recplay_downloads_total"]["ready"] == provider.total_downloads()
    assert m["recplay_download_seconds_count"] == 7
    buckets = m["recplay_download_seconds_bucket"]
    assert buckets["+Inf"] == 7
    bounds = sorted((float(b), v) for b, v in buckets.items())
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(bounds))
    assert m["recplay_download_seconds_sum"] > 0
    assert m["recplay_reclaimed_leases_total"] == {"expired": 0, "worker_gone": 0}

    # Bytes streamed: a whole file, a 100-byte range, and a HEAD (no body).
    assert held.stream("r0").data == audio
    assert len(held.stream("r1", headers={"Range": "bytes=0-99"}).data) == 100
    assert held.stream("r2", method="HEAD").status_code == 200
    assert scrape(client)["recplay_bytes_streamed_total"] == len(audio) + 100
