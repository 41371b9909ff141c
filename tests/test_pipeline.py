"""The pipeline end to end with real workers: dedup under concurrency, per-business limits, no head-of-line."""

from __future__ import annotations

import time

from tasks.slots.semaphore import BusinessSlots
from tests.conftest import assert_quiescent, run_threads, wait_for
from tests.provider import make_wav

AUDIO = make_wav(0.5)


def test_sixty_concurrent_fetches_download_once_and_never_again(api_for, provider, procs, capsys):
    procs.worker(concurrency=8)
    url = provider.add("/biz1/one.wav", body=AUDIO, delay=0.5)
    api = api_for("biz1")
    api.register("CA1", url)

    started = time.monotonic()
    answers = run_threads(60, lambda _i: api.fetch("CA1").status_code)
    assert set(answers) <= {200, 202}
    api.wait_status("CA1", {"ready"}, 30)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\n60 concurrent fetches -> ready in {elapsed:.3f}s (provider latency 0.5s)")

    assert provider.downloads["/biz1/one.wav"] == 1
    assert provider.requests["/biz1/one.wav"] == 1
    # A ready recording is served from the store: more fetches and streams never reach the provider.
    again = run_threads(20, lambda _i: api.fetch("CA1").status_code)
    assert again == [200] * 20
    assert api.stream("CA1").data == AUDIO
    assert provider.requests["/biz1/one.wav"] == 1
    assert_quiescent()


def test_twelve_recordings_at_limit_three_never_exceed_three_at_the_provider(api_for, provider, procs,
                                                                            rclient, settings):
    BusinessSlots(rclient, "biz1", settings).set_limit(3)
    procs.worker(concurrency=8)
    api = api_for("biz1")
    for i in range(12):
        api.register(f"CA{i}", provider.add(f"/biz1/{i}.wav", body=AUDIO, delay=0.4))
    run_threads(12, lambda i: api.fetch(f"CA{i}"))
    for i in range(12):
        api.wait_status(f"CA{i}", {"ready"}, 40)
    assert provider.max_in_flight["biz1"] == 3
    assert all(provider.downloads[f"/biz1/{i}.wav"] == 1 for i in range(12))
    assert_quiescent()


def test_a_business_at_its_limit_holds_no_worker(api_for, provider, procs, rclient, settings):
    # Given 4 worker threads, and business A with 40 one-second jobs at limit 2
    BusinessSlots(rclient, "bizA", settings).set_limit(2)
    procs.worker(concurrency=4)
    a, b = api_for("bizA"), api_for("bizB")
    for i in range(40):
        a.register(f"CA{i}", provider.add(f"/bizA/{i}.wav", body=AUDIO, delay=1.0))
    b.register("CB", provider.add("/bizB/b.wav", body=AUDIO, delay=1.0))
    run_threads(40, lambda i: a.fetch(f"CA{i}"))
    wait_for(lambda: provider.max_in_flight["bizA"] == 2, 10, "A to fill its two slots")

    # When B asks for one recording
    asked = time.monotonic()
    b.fetch("CB")
    b.wait_status("CB", {"ready"}, 20)
    waited = time.monotonic() - asked

    # Then B's job ran within about one download time, while A's backlog was still almost whole
    a_done = sum(1 for i in range(40) if provider.downloads[f"/bizA/{i}.wav"])
    assert a_done <= 6, f"B waited behind A: {a_done} of A's jobs ran first ({waited:.2f}s)"
    assert provider.max_in_flight["bizA"] == 2
    assert provider.max_in_flight["bizB"] == 1
    parked = BusinessSlots(rclient, "bizA", settings).parked_count()
    assert parked >= 30

    # And when the operator drops A's backlog, the two running downloads finish and everything is quiet
    from tests.conftest import run_cli

    run_cli("purge-queue", "--business", "bizA", "--yes")
    assert_quiescent(timeout=30)
    done = [i for i in range(40) if provider.downloads[f"/bizA/{i}.wav"]]
    assert all(a.state(f"CA{i}") == "ready" for i in done)
    assert all(a.state(f"CA{i}") == "new" for i in range(40) if i not in done)
    assert provider.max_in_flight["bizA"] == 2
