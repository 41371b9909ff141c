"""The status picture (``recplay status``, /api/ops/overview, /metrics) against real Redis: what it says of each
business, and that it costs a few round trips however many businesses there are."""

from __future__ import annotations

import math

from tasks.ops.overview import overview
from tasks.slots import semaphore
from tasks.slots.jobs import request_job
from tasks.slots.semaphore import Acquired, BusinessSlots

BUSINESSES = 2 * semaphore.PICTURE_PAGE + 50  # three pages


def _populate(rclient, settings) -> dict[str, dict]:
    """Businesses of three kinds: a lease and a parked job under an own limit of 1; a reservation (the default
    limit); a limit of 2 with two leases and three parked jobs. Returns what each one's picture must say."""
    expected = {}
    for i in range(BUSINESSES):
        business = f"ov{i:03d}"
        slots = BusinessSlots(rclient, business, settings)
        kind = i % 3
        if kind != 1:
            slots.set_limit(1 if kind == 0 else 2)
        jobs = {0: 2, 1: 1, 2: 5}[kind]
        task_ids = [request_job(rclient, settings, business, f"C{i}x{k}", media_url="http://h/x",
                                recording_id=k + 1).task_id for k in range(jobs)]
        leases = {0: 1, 1: 0, 2: 2}[kind]
        for k in range(leases):
            got = slots.acquire(f"C{i}x{k}", task_ids[k] or "", f"w{i}")
            assert isinstance(got, Acquired), got
        held = 1 if kind == 1 else leases
        expected[business] = {
            "limit": {0: 1, 1: settings.max_concurrent, 2: 2}[kind],
            "active": held,
            "parked": jobs - held,
            "first_parked": [f"C{i}x{k}" for k in range(held, jobs)],
            "workers": sorted([f"w{i}"] * leases + ([None] if kind == 1 else []), key=str),
        }
    return expected


def _round_trips(monkeypatch, rclient) -> list[int]:
    """Counts the connections taken from the client's pool: one per command, one per pipeline."""
    taken = [0]
    pool = rclient.connection_pool
    get_connection = pool.get_connection

    def counting(*args, **kwargs):
        taken[0] += 1
        return get_connection(*args, **kwargs)

    monkeypatch.setattr(pool, "get_connection", counting)
    return taken


def test_the_overview_says_each_businesss_limit_holders_and_line(rclient, settings, monkeypatch) -> None:
    expected = _populate(rclient, settings)
    taken = _round_trips(monkeypatch, rclient)

    picture = overview(rclient, settings)

    # SMEMBERS, the queue lengths' pipeline, TIME, then one pipeline a page of businesses
    assert taken[0] == 3 + math.ceil(BUSINESSES / semaphore.PICTURE_PAGE) == 6
    assert [b["business_id"] for b in picture["businesses"]] == sorted(expected)
    for found in picture["businesses"]:
        want = expected[found["business_id"]]
        assert {k: found[k] for k in ("limit", "active", "parked", "first_parked")} == \
            {k: want[k] for k in ("limit", "active", "parked", "first_parked")}, found
        assert sorted((h["worker"] for h in found["holders"]), key=str) == want["workers"], found
        assert all(0 < h["lease_seconds_left"] <= settings.lease_seconds for h in found["holders"]), found


def test_the_overview_of_one_business_says_the_same_as_its_slots(rclient, settings) -> None:
    _populate(rclient, settings)
    for business in ("ov000", "ov001", "ov002"):
        slots = BusinessSlots(rclient, business, settings)
        (found,) = overview(rclient, settings, business)["businesses"]
        assert (found["limit"], found["active"], found["parked"], found["first_parked"]) == \
            (slots.limit(), slots.active(), slots.parked_count(), slots.parked(10))
        assert [h["call_sid"] for h in found["holders"]] == [h.call_sid for h in slots.holders()]
