/**
 * Waiting for a recording to become playable: the backoff schedule and the polling loop (after the server's
 * pushed statuses, when they can be read: events.js).
 *
 * Pure: no DOM and no network. The caller injects how to ask (`start`, `fetchStatus`) and how to wait
 * (`sleep`), so the whole schedule runs in unit tests without a clock.
 */

/** Polls allowed after the first request (the POST that asks for the media). */
export const MAX_POLLS = 5;

/** The whole wait, in milliseconds, when the server does not ask for longer. */
export const POLL_BUDGET_MS = 48_000;

/** A Retry-After larger than this is not honoured in full, so a bad header cannot stall the page. */
export const MAX_RETRY_AFTER_MS = 30_000;

/** Statuses after which polling stops. */
export const FINAL_STATUSES = Object.freeze(['ready', 'failed']);

/**
 * The waits before each poll: doubling from `first`, the last one taking whatever is left of `budget`.
 *
 * With the defaults: 1, 2, 4, 8 and 33 seconds, 48 s in all. Short waits first, because most recordings are
 * ready within a few seconds; the long tail covers a slow provider without more requests.
 *
 * @param {{first?: number, factor?: number, count?: number, budget?: number}} [options] milliseconds
 * @returns {number[]} milliseconds, `count` of them, summing to `budget` (or less when `first` alone exceeds it)
 */
export function backoffDelays({ first = 1000, factor = 2, count = MAX_POLLS, budget = POLL_BUDGET_MS } = {}) {
  const delays = [];
  let spent = 0;
  let next = first;
  for (let i = 0; i < count; i += 1) {
    const remaining = Math.max(0, budget - spent);
    const delay = i === count - 1 ? remaining : Math.min(next, remaining);
    delays.push(delay);
    spent += delay;
    next *= factor;
  }
  return delays;
}

/** The default schedule, computed once. */
export const DEFAULT_DELAYS = Object.freeze(backoffDelays());

/**
 * How long to wait before the next poll: the scheduled delay, or longer when the server asked for it.
 *
 * @param {number} scheduledMs the delay from the backoff schedule
 * @param {number|null|undefined} retryAfterSeconds the server's Retry-After, if any
 * @param {number} [maxRetryAfterMs] the most of a Retry-After that is honoured
 * @returns {number} milliseconds
 */
export function nextDelay(scheduledMs, retryAfterSeconds, maxRetryAfterMs = MAX_RETRY_AFTER_MS) {
  if (typeof retryAfterSeconds !== 'number' || !Number.isFinite(retryAfterSeconds) || retryAfterSeconds <= 0) {
    return scheduledMs;
  }
  return Math.max(scheduledMs, Math.min(retryAfterSeconds * 1000, maxRetryAfterMs));
}

/** True when polling should stop at this status. */
export function isFinal(status) {
  return FINAL_STATUSES.includes(status?.status);
}

/**
 * Ask for a recording, then wait until it is ready, it failed, or the schedule is spent.
 *
 * `start` and `fetchStatus` resolve to `{status, retryAfter}`: the status object and the Retry-After in
 * seconds (or null). A `failed` status stops the loop at once. Errors they throw propagate unchanged.
 *
 * With `follow`, the server's pushed statuses are read first (events.js): it resolves to the last status it
 * received (null for none) once its stream is over. A final one ends the wait with no polling; otherwise,
 * whatever went wrong with the stream, the whole polling schedule runs from there.
 *
 * @param {object} options
 * @param {() => Promise<{status: object, retryAfter: number|null}>} options.start the first request (POST fetch)
 * @param {() => Promise<{status: object, retryAfter: number|null}>} options.fetchStatus one poll (GET status)
 * @param {(ms: number, signal?: AbortSignal) => Promise<void>} options.sleep waits, rejecting when aborted
 * @param {(options: {signal?: AbortSignal, onStatus: (status: object) => void}) => Promise<object|null>}
 *   [options.follow] reads pushed statuses, reporting each one to its `onStatus`
 * @param {readonly number[]} [options.delays] the schedule; its length is the number of polls
 * @param {(status: object, poll: number) => void} [options.onStatus] told each status (poll 0 is the first request
 *   and every pushed status)
 * @param {AbortSignal} [options.signal] cancels the wait: the promise rejects with the signal's reason
 * @returns {Promise<object>} the last status seen: `ready`, `failed`, or still pending when the schedule ran out
 */
export async function waitUntilReady({ start, fetchStatus, sleep, follow, delays = DEFAULT_DELAYS, onStatus, signal }) {
  signal?.throwIfAborted();
  let { status, retryAfter } = await start();
  signal?.throwIfAborted();
  onStatus?.(status, 0);
  if (follow && !isFinal(status)) {
    const pushed = await follow({ signal, onStatus: (latest) => onStatus?.(latest, 0) });
    signal?.throwIfAborted();
    if (pushed) {
      status = pushed;
      retryAfter = null;
    }
  }
  for (let poll = 0; poll < delays.length && !isFinal(status); poll += 1) {
    await sleep(nextDelay(delays[poll], retryAfter), signal);
    signal?.throwIfAborted();
    ({ status, retryAfter } = await fetchStatus());
    signal?.throwIfAborted();
    onStatus?.(status, poll + 1);
  }
  return status;
}

/**
 * A `sleep` for {@link waitUntilReady}: resolves after `ms`, rejects with the signal's reason when aborted.
 *
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
export function abortableSleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
