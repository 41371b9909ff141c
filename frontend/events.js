/**
 * Readiness pushed by the server: `GET api/recordings/<sid>/events` streams one status object per change
 * (Server-Sent Events) until the recording is ready or failed.
 *
 * EventSource cannot send the Authorization header, so the stream is read with fetch() and a reader. When it
 * cannot be used (an error answer, no stream, the network, silence for too long, or an end before a final
 * status) the caller falls back to polling with backoff (poll.js). `fetch` is injected, so this runs in tests.
 */

import { isFinal } from './poll.js';
import { SSE_START, sseFeed } from './sse.js';

/** With nothing at all from the server for this long (not even a comment), the stream is given up. */
export const EVENTS_IDLE_MS = 45_000;

/**
 * The status object an event carries, or null when its data is not one.
 *
 * @param {{type: string, data: string}} event
 * @returns {object|null}
 */
export function statusFromEvent(event) {
  if (event.type !== 'message' && event.type !== 'status') return null;
  try {
    const status = JSON.parse(event.data);
    return status && typeof status === 'object' && typeof status.status === 'string' ? status : null;
  } catch {
    return null;
  }
}

/**
 * True for an answer that carries the stream: 200 with a text/event-stream body.
 *
 * @param {number|null} httpStatus
 * @param {string|null} contentType
 * @returns {boolean}
 */
export function isEventStream(httpStatus, contentType) {
  return httpStatus === 200 && /^text\/event-stream\s*(;|$)/i.test(String(contentType ?? '').trim());
}

/**
 * What to do once the stream is over.
 *
 * - `done`: a final status (ready or failed) arrived; nothing more to ask.
 * - `unauthorized`: the token was refused (401); polling would be refused too.
 * - `poll`: anything else (an error answer, not an event stream, a network error or a stall, or an end
 *   without a final status): fall back to polling.
 *
 * @param {object} outcome
 * @param {number|null} [outcome.httpStatus] the answer's status, null when none came
 * @param {string|null} [outcome.contentType] the answer's Content-Type
 * @param {Error|null} [outcome.error] what interrupted the request or the stream
 * @param {object|null} [outcome.lastStatus] the last status object received
 * @returns {{action: 'done'|'unauthorized'|'poll', reason: string}}
 */
export function afterEvents({ httpStatus = null, contentType = null, error = null, lastStatus = null } = {}) {
  if (isFinal(lastStatus)) return { action: 'done', reason: lastStatus.status };
  if (httpStatus === 401) return { action: 'unauthorized', reason: 'http_401' };
  if (httpStatus !== null && httpStatus !== 200) return { action: 'poll', reason: `http_${httpStatus}` };
  if (httpStatus === 200 && !isEventStream(httpStatus, contentType)) {
    return { action: 'poll', reason: 'not_event_stream' };
  }
  if (error) return { action: 'poll', reason: error.name === 'TimeoutError' ? 'stalled' : 'network_error' };
  return { action: 'poll', reason: 'closed_early' };
}

/**
 * Follow a recording's events until a final status, reporting each status as it arrives.
 *
 * @param {object} options
 * @param {string} options.url the events URL
 * @param {string} options.token the business token, sent in the Authorization header
 * @param {typeof fetch} options.fetchImpl
 * @param {(status: object) => void} [options.onStatus] told each status object received
 * @param {AbortSignal} [options.signal] cancels: the promise rejects with the signal's reason
 * @param {number} [options.idleMs] give up after this long without a byte
 * @returns {Promise<{action: 'done'|'unauthorized'|'poll', reason: string, status: object|null}>} see
 *   {@link afterEvents}; `status` is the last status received
 */
export async function followEvents({ url, token, fetchImpl, onStatus, signal, idleMs = EVENTS_IDLE_MS }) {
  signal?.throwIfAborted();
  // One controller ends everything: the caller's abort, a stall, or a final status.
  const controller = new AbortController();
  let reader = null;
  const stop = (reason) => {
    if (!controller.signal.aborted) controller.abort(reason);
    reader?.cancel(reason).catch(() => {}); // a pending read ends at once, whatever fetch does with the signal
  };
  const onAbort = () => stop(signal.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  let timer = null;
  let stalled = null;
  const stillAlive = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = new Error(`Nothing from the server for ${idleMs} ms.`);
      stalled.name = 'TimeoutError';
      stop(stalled);
    }, idleMs);
  };

  const outcome = { httpStatus: null, contentType: null, error: null, lastStatus: null };
  try {
    stillAlive();
    const response = await fetchImpl(url, {
      method: 'GET',
      headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
      cache: 'no-store',
      credentials: 'omit',
      signal: controller.signal,
    });
    outcome.httpStatus = response.status;
    outcome.contentType = response.headers.get('Content-Type');
    if (!isEventStream(outcome.httpStatus, outcome.contentType) || !response.body) {
      response.body?.cancel().catch(() => {});
    } else {
      reader = response.body.getReader();
      const decoder = new TextDecoder();
      let state = SSE_START;
      while (!controller.signal.aborted) {
        const { value, done } = await reader.read();
        if (done || controller.signal.aborted) break;
        stillAlive();
        const fed = sseFeed(state, decoder.decode(value, { stream: true }));
        state = fed.state;
        for (const event of fed.events) {
          const status = statusFromEvent(event);
          if (!status) continue;
          outcome.lastStatus = status;
          onStatus?.(status);
          if (signal?.aborted) break;
          if (isFinal(status)) {
            stop(new Error('final status'));
            break;
          }
        }
      }
    }
  } catch (error) {
    outcome.error = error; // a network error, or the abort of a stall (replaced by the stall below)
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    reader?.cancel().catch(() => {}); // frees the connection; nothing happens to a stream already over
  }
  if (signal?.aborted) throw signal.reason;
  if (stalled) outcome.error = stalled;
  return { ...afterEvents(outcome), status: outcome.lastStatus };
}
