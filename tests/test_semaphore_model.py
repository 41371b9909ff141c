"""A stateful property test of one business's semaphore: the real Lua scripts in real Redis, against a model.

Hypothesis drives random sequences of: a job requested (a reserved slot and a message, or parked at once), a
message delivered (acquire: slot, park or stale), a lease renewed, an attempt finished and its slot released
(handing it to the oldest parked job), a lease or reservation expired (its score set into the past), a worker
crashed (it forgets its slot without releasing it), a live worker stalling past its lease while the sweeper takes
its job back, a sweep, and time passing (crashed slots expire, the sweeper runs, messages arrive, workers finish).
After every step Redis must match the model exactly (the parked jobs in arrival order), the limit must hold and
no job may be lost; after time has passed, every job must have finished and every parked job must have been
handed a slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tasks.ops.sweeper import SweepReport, sweep_business
from tasks.slots import keys
from tasks.slots.jobs import finish_job, request_job
from tasks.slots.semaphore import Acquired, BusinessSlots, Parked, Stale

BIZ = "model"
CALL_SIDS = [f"J{i}" for i in range(4)]
#: Steps before time may pass: the states worth exploring come from the steps before it.
STEPS_BEFORE_TIME_PASSES = 25


@dataclass
class Job:
    status: str  # queued | processing | ready | failed
    task_id: str  # the task id a message must carry ("" while no message may claim the job)
    seq: int  # its arrival number: its place in line
    fence: int | None = None
    attempts: int = 0


@dataclass
class Holder:
    """A member of the holders ZSET, as Redis should have it."""

    fence: int
    task_id: str
    reservation: bool
    expired: bool = False


@dataclass
class Attempt:
    """A worker running a download: it may renew, finish and release, or crash."""

    call_sid: str
    fence: int


class SemaphoreMachine(RuleBasedStateMachine):
    client = None
    settings = None

    def __init__(self) -> None:
        super().__init__()
        self.client.flushdb()
        self.slots = BusinessSlots(self.client, BIZ, self.settings)
        self.limit = 0
        self.jobs: dict[str, Job] = {}
        self.pending: list[tuple[str, str]] = []  # messages in the broker: (call_sid, task_id)
        self.holders: dict[str, Holder] = {}
        self.waiting: dict[str, int] = {}  # parked call_sid -> arrival number
        self.attempts: list[Attempt] = []
        self.last_fence = 0
        self.last_seq = 0
        self.steps = 0

    # -- the model's own steps, mirroring lib.lua --------------------------------------------------------------

    def _live(self) -> int:
        return sum(1 for h in self.holders.values() if not h.expired)

    def _may_take_slot(self, seq: int) -> bool:
        return self._live() < self.limit and (not self.waiting or seq <= min(self.waiting.values()))

    def _park(self, call_sid: str) -> None:
        self.waiting[call_sid] = self.jobs[call_sid].seq

    def _reservation_of(self, call_sid: str, task_id: str) -> None:
        """Record a reservation Redis made, with the fence it gave it."""
        fence = int(self.client.hget(keys.holder_info(BIZ), call_sid).split("|")[0])
        self._new_fence(fence)
        self.holders[call_sid] = Holder(fence, task_id, reservation=True)
        self.jobs[call_sid].task_id = task_id
        self.pending.append((call_sid, task_id))

    def _hand_off(self) -> list[str]:
        handed = []
        while self.waiting and self._live() + len(handed) < self.limit:
            call_sid = min(self.waiting, key=self.waiting.__getitem__)
            del self.waiting[call_sid]
            if self.jobs[call_sid].status == "queued":
                handed.append(call_sid)
        return handed

    def _take_handed(self, handed: list[tuple[str, str]]) -> None:
        for call_sid, task_id in handed:
            self._reservation_of(call_sid, task_id)

    def _new_fence(self, fence: int) -> None:
        assert fence > self.last_fence, "fences must only grow"
        self.last_fence = fence

    # -- rules -------------------------------------------------------------------------------------------------

    @invariant()
    def count_steps(self) -> None:
        self.steps += 1

    @initialize(limit=st.integers(1, 3))
    def set_limit(self, limit: int) -> None:
        self.limit = limit
        assert self.slots.set_limit(limit) == []

    @rule(call_sid=st.sampled_from(CALL_SIDS))
    def request(self, call_sid: str) -> None:
        job = self.jobs.get(call_sid)
        if job is not None and job.status in ("queued", "processing"):
            return
        mode = "force" if job is not None and job.status == "ready" else "fetch"
        result = request_job(self.client, self.settings, BIZ, call_sid, media_url="http://h/x", recording_id=1,
                             mode=mode)
        self.last_seq += 1
        self.jobs[call_sid] = Job("queued", "", self.last_seq)
        if self._may_take_slot(self.last_seq):
            assert result.outcome == "enqueued", result
            self._reservation_of(call_sid, result.task_id)
        else:
            assert (result.outcome, result.task_id) == ("parked", None), result
            self._park(call_sid)

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        call_sid, task_id = self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1)))
        got = self.slots.acquire(call_sid, task_id, "w")
        job = self.jobs[call_sid]
        if job.status != "queued" or job.task_id != task_id:
            assert isinstance(got, Stale), got
            return
        holder = self.holders.get(call_sid)
        if holder is not None and holder.reservation and holder.task_id == task_id and not holder.expired:
            assert isinstance(got, Acquired) and got.fence == holder.fence, got
            holder.reservation = False
        else:
            self.holders.pop(call_sid, None)  # an expired reservation, or a superseded attempt's lease: void
            if not self._may_take_slot(job.seq):
                assert isinstance(got, Parked), got
                self._park(call_sid)
                return
            assert isinstance(got, Acquired), got
            self._new_fence(got.fence)
            self.holders[call_sid] = Holder(got.fence, task_id, reservation=False)
        self.waiting.pop(call_sid, None)
        job.status, job.fence = "processing", got.fence
        job.attempts += 1
        assert got.attempts == job.attempts
        self.attempts.append(Attempt(call_sid, got.fence))

    @precondition(lambda self: self.attempts)
    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        attempt = data.draw(st.sampled_from(self.attempts))
        holder = self.holders.get(attempt.call_sid)
        ours = holder is not None and not holder.reservation and holder.fence == attempt.fence
        assert self.slots.renew(attempt.call_sid, attempt.fence) is (ours and not holder.expired)

    @precondition(lambda self: self.attempts)
    @rule(data=st.data())
    def finish_and_release(self, data: st.DataObject) -> None:
        attempt = data.draw(st.sampled_from(self.attempts))
        self.attempts.remove(attempt)
        job = self.jobs[attempt.call_sid]
        current = job.status == "processing" and job.fence == attempt.fence
        assert finish_job(self.client, self.settings, BIZ, attempt.call_sid, attempt.fence, "ready") is current
        if current:
            job.status = "ready"
        holder = self.holders.get(attempt.call_sid)
        released = holder is not None and not holder.reservation and holder.fence == attempt.fence
        if released:
            del self.holders[attempt.call_sid]
        expected_handed = self._hand_off()
        real_released, handed = self.slots.release(attempt.call_sid, attempt.fence)
        assert real_released is released
        assert [c for c, _ in handed] == expected_handed
        self._take_handed(handed)

    @precondition(lambda self: self.attempts)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """The worker dies: it never renews or releases again; its slot stays until it expires."""
        self.attempts.remove(data.draw(st.sampled_from(self.attempts)))

    @precondition(lambda self: any(not h.expired for h in self.holders.values()))
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        call_sid = data.draw(st.sampled_from(sorted(c for c, h in self.holders.items() if not h.expired)))
        self.holders[call_sid].expired = True
        self.client.zadd(keys.holders(BIZ), {call_sid: 1})

    @precondition(lambda self: any(a.call_sid in self.holders for a in self.attempts))
    @rule(data=st.data())
    def stall_past_the_lease(self, data: st.DataObject) -> None:
        """A live worker stalls past its lease; the sweeper takes the job back and another worker gets its new
        message at once; then the stalled worker wakes up, renews, finishes and releases, all with its old fence."""
        stalled = data.draw(st.sampled_from([a for a in self.attempts if a.call_sid in self.holders]))
        holder = self.holders[stalled.call_sid]
        if not holder.expired:
            holder.expired = True
            self.client.zadd(keys.holders(BIZ), {stalled.call_sid: 1})
        self.sweep()
        message = (stalled.call_sid, self.jobs[stalled.call_sid].task_id)
        if message in self.pending:
            self.deliver(_Fixed(self.pending.index(message)))
        self.renew(_Fixed(stalled))
        self.finish_and_release(_Fixed(stalled))

    @rule()
    def sweep(self) -> None:
        reclaimed, reparked, requeued, failed = 0, 0, 0, []
        for call_sid in sorted(c for c, h in self.holders.items() if h.expired):
            holder = self.holders.pop(call_sid)
            job = self.jobs[call_sid]
            if holder.reservation:
                if job.status == "queued" and job.task_id == holder.task_id:
                    self._park(call_sid)
                    reparked += 1
                continue
            reclaimed += 1
            if job.status == "processing" and job.fence == holder.fence:
                if job.attempts >= self.settings.max_attempts:
                    job.status = "failed"
                    failed.append(call_sid)
                else:
                    job.status, job.task_id = "queued", ""
                    self._park(call_sid)
                    requeued += 1
        handed = self._hand_off()

        report = SweepReport()
        sweep_business(self.client, self.settings, BIZ, report)

        assert (report.reclaimed, report.reparked, report.requeued) == (reclaimed, reparked, requeued)
        assert sorted(c for _, c in report.failed) == sorted(failed)
        assert [c for _, c in report.dispatched] == handed  # in arrival order
        self._take_handed([(c, self.client.hget(keys.job(BIZ, c), "task_id")) for c in handed])

    # -- invariants --------------------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    @invariant()
    def the_limit_is_never_exceeded(self) -> None:
        if not self.limit:
            return
        live = self.client.zcount(keys.holders(BIZ), f"({self._now_ms()}", "+inf")
        assert live <= self.limit
        assert live == self._live()

    @invariant()
    def redis_holds_what_the_model_holds(self) -> None:
        members = dict(self.client.zrange(keys.holders(BIZ), 0, -1, withscores=True))
        info = self.client.hgetall(keys.holder_info(BIZ))
        assert set(members) == set(self.holders) == set(info)  # no slot without its owner, no owner without its slot
        now = self._now_ms()
        longest = max(self.settings.lease_seconds, self.settings.reservation_seconds) * 1000
        for call_sid, holder in self.holders.items():
            assert (members[call_sid] <= now) is holder.expired
            assert members[call_sid] <= now + longest  # every slot comes back by itself
            fence, task_id, worker = info[call_sid].split("|", 2)
            assert int(fence) == holder.fence
            assert (worker == "") is holder.reservation
            if holder.reservation:
                assert task_id == holder.task_id
        in_line = self.client.zrange(keys.waiting(BIZ), 0, -1, withscores=True)
        assert in_line == sorted(((c, float(s)) for c, s in self.waiting.items()), key=lambda e: e[1])
        for call_sid, job in self.jobs.items():
            assert self.client.hget(keys.job(BIZ, call_sid), "status") == job.status

    @invariant()
    def no_waiting_job_is_lost(self) -> None:
        for call_sid, job in self.jobs.items():
            if job.status == "queued":
                assert (call_sid, job.task_id) in self.pending or call_sid in self.waiting, call_sid

    @precondition(lambda self: self.steps >= STEPS_BEFORE_TIME_PASSES)
    @rule()
    def let_time_do_its_work(self) -> None:
        """Crashed slots expire, the sweeper runs, messages arrive, workers finish: every job must end, and every
        parked job must have been handed a slot (it ends ready), from whatever state the steps so far left."""
        for _ in range(60):
            if all(j.status in ("ready", "failed") for j in self.jobs.values()):
                break
            for attempt in list(self.attempts):
                self.finish_and_release(_Fixed(attempt))
            for call_sid, holder in list(self.holders.items()):
                if not holder.reservation and not holder.expired:
                    holder.expired = True  # no live attempt is left: this slot belongs to a crashed worker
                    self.client.zadd(keys.holders(BIZ), {call_sid: 1})
            self.sweep()
            while self.pending:
                self.deliver(_Fixed(0))
            self.redis_holds_what_the_model_holds()
            self.no_waiting_job_is_lost()
        assert all(j.status in ("ready", "failed") for j in self.jobs.values()), self.jobs
        assert self.waiting == {} and self.holders == {}
        assert self.client.zcard(keys.waiting(BIZ)) == 0
        assert self.client.zcard(keys.holders(BIZ)) == 0


class _Fixed:
    """Stands in for Hypothesis's data object when teardown calls a rule with a chosen value."""

    def __init__(self, value: object) -> None:
        self.value = value

    def draw(self, _strategy: object) -> object:
        return self.value


@pytest.mark.slow
@pytest.mark.timeout(600)  # only a failing run takes long: Hypothesis then shrinks it step by step
def test_the_semaphore_matches_its_model_under_random_acquire_renew_release_expire_crash_and_sweep(rclient,
                                                                                                  settings):
    SemaphoreMachine.client = rclient
    SemaphoreMachine.settings = settings
    run_state_machine_as_test(SemaphoreMachine, settings=hsettings(
        max_examples=200, stateful_step_count=50, deadline=None, derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    ))
