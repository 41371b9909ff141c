import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  DEFAULT_DELAYS,
  MAX_POLLS,
  MAX_RETRY_AFTER_MS,
  POLL_BUDGET_MS,
  abortableSleep,
  backoffDelays,
  isFinal,
  nextDelay,
  waitUntilReady,
} from '../poll.js';

/** A fake server: `start` answers the first status, each poll the next one; sleeps are recorded, not waited. */
function script(statuses, { retryAfter = null } = {}) {
  const answers = statuses.map((status) => ({ status: { call_sid: 'CA1', status }, retryAfter }));
  const calls = { start: 0, polls: 0, sleeps: [] };
  let next = 0;
  return {
    calls,
    start: async () => {
      calls.start += 1;
      return answers[next++];
    },
    fetchStatus: async () => {
      calls.polls += 1;
      return answers[Math.min(next++, answers.length - 1)];
    },
    sleep: async (ms) => {
      calls.sleeps.push(ms);
    },
  };
}

describe('backoffDelays', () => {
  it('doubles from one second and spends the rest of the 48 s budget on the last wait', () => {
    assert.deepEqual(backoffDelays(), [1000, 2000, 4000, 8000, 33000]);
  });

  it('schedules exactly MAX_POLLS waits summing to the budget', () => {
    assert.equal(DEFAULT_DELAYS.length, MAX_POLLS);
    assert.equal(MAX_POLLS, 5);
    assert.equal(DEFAULT_DELAYS.reduce((a, b) => a + b, 0), POLL_BUDGET_MS);
    assert.equal(POLL_BUDGET_MS, 48000);
  });

  it('never lets a wait exceed what is left of a small budget', () => {
    assert.deepEqual(backoffDelays({ first: 1000, count: 4, budget: 5000 }), [1000, 2000, 2000, 0]);
  });

  it('follows the given first wait and factor', () => {
    assert.deepEqual(backoffDelays({ first: 500, factor: 3, count: 3, budget: 100000 }), [500, 1500, 98000]);
  });

  it('returns no waits for no polls', () => {
    assert.deepEqual(backoffDelays({ count: 0 }), []);
  });
});

describe('nextDelay', () => {
  it('keeps the schedule when there is no Retry-After', () => {
    assert.equal(nextDelay(2000, null), 2000);
    assert.equal(nextDelay(2000, undefined), 2000);
  });

  it('waits as long as the server asks when that is longer than the schedule', () => {
    assert.equal(nextDelay(1000, 3), 3000);
  });

  it('never polls sooner than scheduled because of a short Retry-After', () => {
    assert.equal(nextDelay(8000, 1), 8000);
  });

  it('caps a huge Retry-After', () => {
    assert.equal(nextDelay(1000, 3600), MAX_RETRY_AFTER_MS);
    assert.equal(nextDelay(1000, 3600, 5000), 5000);
  });

  it('ignores unusable Retry-After values', () => {
    for (const bad of [0, -4, Number.NaN, Number.POSITIVE_INFINITY, '5']) assert.equal(nextDelay(4000, bad), 4000);
  });
});

describe('isFinal', () => {
  it('is true only for ready and failed', () => {
    assert.equal(isFinal({ status: 'ready' }), true);
    assert.equal(isFinal({ status: 'failed' }), true);
    for (const status of ['new', 'queued', 'processing']) assert.equal(isFinal({ status }), false);
    assert.equal(isFinal(null), false);
  });
});

describe('waitUntilReady', () => {
  it('returns at once without polling when the first request says ready', async () => {
    const server = script(['ready']);
    const status = await waitUntilReady(server);
    assert.equal(status.status, 'ready');
    assert.deepEqual(server.calls, { start: 1, polls: 0, sleeps: [] });
  });

  it('polls with backoff until the recording is ready', async () => {
    const server = script(['queued', 'queued', 'processing', 'ready']);
    const status = await waitUntilReady(server);
    assert.equal(status.status, 'ready');
    assert.equal(server.calls.start, 1);
    assert.equal(server.calls.polls, 3);
    assert.deepEqual(server.calls.sleeps, [1000, 2000, 4000]);
  });

  it('stops at once on failed', async () => {
    const server = script(['queued', 'failed', 'ready']);
    const status = await waitUntilReady(server);
    assert.equal(status.status, 'failed');
    assert.equal(server.calls.polls, 1);
  });

  it('gives up after five polls and about 48 s, returning the last pending status', async () => {
    const server = script(['queued', 'processing']);
    const status = await waitUntilReady(server);
    assert.equal(status.status, 'processing');
    assert.equal(server.calls.start, 1);
    assert.equal(server.calls.polls, 5);
    assert.deepEqual(server.calls.sleeps, [1000, 2000, 4000, 8000, 33000]);
    assert.equal(server.calls.sleeps.reduce((a, b) => a + b, 0), 48000);
  });

  it('honours Retry-After when it asks for longer than the schedule', async () => {
    const server = script(['queued', 'queued', 'queued', 'ready'], { retryAfter: 3 });
    await waitUntilReady(server);
    assert.deepEqual(server.calls.sleeps, [3000, 3000, 4000]);
  });

  it('follows a custom schedule', async () => {
    const server = script(['queued']);
    await waitUntilReady({ ...server, delays: [10, 20] });
    assert.deepEqual(server.calls.sleeps, [10, 20]);
    assert.equal(server.calls.polls, 2);
  });

  it('reports every status seen, numbered from the first request', async () => {
    const server = script(['new', 'queued', 'ready']);
    const seen = [];
    await waitUntilReady({ ...server, onStatus: (status, poll) => seen.push([poll, status.status]) });
    assert.deepEqual(seen, [[0, 'new'], [1, 'queued'], [2, 'ready']]);
  });

  it('propagates a failed request unchanged', async () => {
    const boom = new Error('network down');
    const server = script(['queued']);
    await assert.rejects(waitUntilReady({ ...server, fetchStatus: async () => { throw boom; } }), boom);
  });

  it('stops polling when aborted during a wait', async () => {
    const server = script(['queued', 'queued', 'ready']);
    const controller = new AbortController();
    const sleep = async () => controller.abort(new Error('cancelled'));
    await assert.rejects(waitUntilReady({ ...server, sleep, signal: controller.signal }), /cancelled/);
    assert.equal(server.calls.polls, 0);
  });

  it('sends nothing when already aborted', async () => {
    const server = script(['ready']);
    const controller = new AbortController();
    controller.abort(new Error('cancelled'));
    await assert.rejects(waitUntilReady({ ...server, signal: controller.signal }), /cancelled/);
    assert.equal(server.calls.start, 0);
  });
});

describe('waitUntilReady with pushed statuses', () => {
  /** A `follow` that reports `statuses` and resolves to the last one (or throws `error`). */
  function pushing(statuses, { error = null } = {}) {
    const calls = { follow: 0 };
    const follow = async ({ onStatus }) => {
      calls.follow += 1;
      for (const status of statuses) onStatus({ call_sid: 'CA1', status });
      if (error) throw error;
      return statuses.length ? { call_sid: 'CA1', status: statuses.at(-1) } : null;
    };
    return { calls, follow };
  }

  it('follows the events after the first request and polls nothing when they end ready', async () => {
    const server = script(['queued']);
    const { calls, follow } = pushing(['processing', 'ready']);
    const seen = [];
    const status = await waitUntilReady({ ...server, follow, onStatus: (s, poll) => seen.push([poll, s.status]) });
    assert.equal(status.status, 'ready');
    assert.equal(calls.follow, 1);
    assert.deepEqual(server.calls, { start: 1, polls: 0, sleeps: [] });
    assert.deepEqual(seen, [[0, 'queued'], [0, 'processing'], [0, 'ready']]);
  });

  it('stops at a pushed failed', async () => {
    const server = script(['queued']);
    const status = await waitUntilReady({ ...server, ...pushing(['failed']) });
    assert.equal(status.status, 'failed');
    assert.equal(server.calls.polls, 0);
  });

  it('does not follow when the first answer is already final', async () => {
    const server = script(['ready']);
    const { calls, follow } = pushing(['ready']);
    await waitUntilReady({ ...server, follow });
    assert.equal(calls.follow, 0);
  });

  it('falls back to the whole polling schedule when the events end early', async () => {
    const server = script(['queued', 'processing', 'processing', 'ready']);
    const status = await waitUntilReady({ ...server, ...pushing(['processing']) });
    assert.equal(status.status, 'ready');
    assert.deepEqual(server.calls.sleeps, [1000, 2000, 4000]);
  });

  it('falls back to polling when the events gave nothing, keeping the first Retry-After', async () => {
    const server = script(['queued', 'ready'], { retryAfter: 3 });
    const status = await waitUntilReady({ ...server, ...pushing([]) });
    assert.equal(status.status, 'ready');
    assert.deepEqual(server.calls.sleeps, [3000]);
  });

  it('propagates what follow throws (a refused token)', async () => {
    const refused = new Error('unauthorized');
    const server = script(['queued']);
    await assert.rejects(waitUntilReady({ ...server, ...pushing([], { error: refused }) }), refused);
    assert.equal(server.calls.polls, 0);
  });

  it('passes the signal to follow and stops when aborted during it', async () => {
    const server = script(['queued', 'ready']);
    const controller = new AbortController();
    let given = null;
    const follow = async ({ signal }) => {
      given = signal;
      controller.abort(new Error('cancelled'));
      return null;
    };
    await assert.rejects(waitUntilReady({ ...server, follow, signal: controller.signal }), /cancelled/);
    assert.equal(given, controller.signal);
    assert.equal(server.calls.polls, 0);
  });
});

describe('abortableSleep', () => {
  it('resolves after the delay', async () => {
    const started = performance.now();
    await abortableSleep(20);
    assert.ok(performance.now() - started >= 15);
  });

  it('rejects with the reason as soon as the signal aborts', async () => {
    const controller = new AbortController();
    const waiting = abortableSleep(60_000, controller.signal);
    controller.abort(new Error('stop'));
    await assert.rejects(waiting, /stop/);
  });

  it('rejects at once for an aborted signal', async () => {
    await assert.rejects(abortableSleep(60_000, AbortSignal.abort(new Error('gone'))), /gone/);
  });
});
