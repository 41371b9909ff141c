/**
 * The recplay HTTP API as the player uses it.
 *
 * The access token comes from the page's URL fragment (`#token=...`), which browsers never send to a server,
 * and goes out only in the `Authorization` header. `fetch` is injected, so this module runs in unit tests.
 */

import { followEvents } from './events.js';
import { filterParams } from './filters.js';
import { MAX_PEAKS_BYTES, parsePeaks } from './peaks.js';

/** Raised when the API answers an error, or cannot be reached (`httpStatus` 0). */
export class ApiError extends Error {
  /**
   * @param {number} httpStatus the HTTP status, 0 when the server could not be reached
   * @param {string} code the API's snake_case error code
   * @param {string} message a sentence a person can read
   */
  constructor(httpStatus, code, message) {
    super(message);
    this.name = 'ApiError';
    this.httpStatus = httpStatus;
    this.code = code;
  }

  /** True when the token is missing, bad or expired. */
  get isUnauthorized() {
    return this.httpStatus === 401;
  }
}

/**
 * The access token in a URL fragment such as `#token=abc` (other fragment parameters are allowed).
 *
 * @param {string} hash `location.hash`
 * @returns {string|null}
 */
export function tokenFromHash(hash) {
  const token = new URLSearchParams(String(hash ?? '').replace(/^#/, '')).get('token');
  return token && token.trim() ? token.trim() : null;
}

/**
 * The business a token names, read from its payload without verifying it (only the server can), for display.
 *
 * @param {string} token a JWT
 * @returns {string|null}
 */
export function businessFromToken(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = payload + '='.repeat((4 - (payload.length % 4)) % 4);
    const sub = JSON.parse(atob(padded)).sub;
    return typeof sub === 'string' && sub ? sub : null;
  } catch {
    return null;
  }
}

/**
 * A Retry-After header in seconds: either delay-seconds or an HTTP date.
 *
 * @param {string|null} value
 * @param {number} [now] milliseconds since the epoch
 * @returns {number|null} seconds (0 or more), or null when absent or unreadable
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null) return null;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text);
  if (!/[a-z]/i.test(text)) return null; // an HTTP date names its day and month; "-3" is no delay
  const date = Date.parse(text);
  if (Number.isNaN(date)) return null;
  return Math.max(0, Math.ceil((date - now) / 1000));
}

/**
 * The download link for a stream URL: the same signed URL with `download=1`.
 *
 * @param {string} streamUrl relative or absolute
 * @param {string} base the document's base URL
 * @returns {string}
 */
export function downloadUrl(streamUrl, base) {
  const url = new URL(streamUrl, base);
  url.searchParams.set('download', '1');
  return url.origin === new URL(base).origin ? url.pathname + url.search : url.href;
}

/**
 * An API client bound to one token.
 *
 * @param {object} options
 * @param {string} options.token the business access token
 * @param {string} [options.base] the URL the API paths are relative to (the page's base URL)
 * @param {typeof fetch} [options.fetchImpl]
 */
export function createApi({ token, base = globalThis.document?.baseURI, fetchImpl = globalThis.fetch?.bind(globalThis) }) {
  async function request(method, path, { signal } = {}) {
    let response;
    try {
      response = await fetchImpl(new URL(path, base).href, {
        method,
        headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
        cache: 'no-store',
        credentials: 'omit',
        signal,
      });
    } catch (error) {
      if (error?.name === 'AbortError' || signal?.aborted) throw signal?.reason ?? error;
      throw new ApiError(0, 'network_error', 'The server could not be reached. Check your connection and try again.');
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const problem = body?.error ?? {};
      throw new ApiError(
        response.status,
        typeof problem.code === 'string' ? problem.code : 'http_error',
        typeof problem.message === 'string' && problem.message ? problem.message : `The server answered ${response.status}.`,
      );
    }
    return { body, retryAfter: parseRetryAfter(response.headers.get('Retry-After')) };
  }

  const recordingPath = (callSid) => `api/recordings/${encodeURIComponent(callSid)}`;

  return {
    /** One page of recordings, newest first, matching `filters` (filters.js): `{items, nextCursor}`. */
    async listRecordings({ cursor = null, limit = 50, filters = null, signal } = {}) {
      const query = new URLSearchParams({ limit: String(limit) });
      if (cursor) query.set('cursor', cursor);
      for (const [name, value] of filterParams(filters)) query.set(name, value);
      const { body } = await request('GET', `api/recordings?${query}`, { signal });
      return { items: Array.isArray(body?.items) ? body.items : [], nextCursor: body?.next_cursor ?? null };
    },

    /** A recording's status: `{status, retryAfter}`. */
    async getStatus(callSid, { signal } = {}) {
      const { body, retryAfter } = await request('GET', recordingPath(callSid), { signal });
      return { status: body, retryAfter };
    },

    /** Ask for a recording's media (enqueues at most one job server-side): `{status, retryAfter}`. */
    async requestMedia(callSid, { signal } = {}) {
      const { body, retryAfter } = await request('POST', `${recordingPath(callSid)}/fetch`, { signal });
      return { status: body, retryAfter };
    },

    /**
     * Follow a recording's pushed statuses (events.js) until a final one, telling `onStatus` each of them.
     * Resolves to `{action, reason, status}`: `action` is `done`, or `poll` when the caller should fall back
     * to polling. A refused token rejects with an unauthorized ApiError, as the other calls do.
     */
    async followStatus(callSid, { signal, onStatus } = {}) {
      const url = new URL(`${recordingPath(callSid)}/events`, base).href;
      const result = await followEvents({ url, token, fetchImpl, signal, onStatus });
      if (result.action === 'unauthorized') {
        throw new ApiError(401, 'unauthorized', 'The access token was refused.');
      }
      return result;
    },
  };
}

/**
 * A recording's waveform peaks from its `peaks_url`. The URL carries its own short-lived token, so the request
 * has no Authorization header (and no cookies).
 *
 * @param {string} peaksUrl relative or absolute
 * @param {object} [options]
 * @param {string} [options.base] the document's base URL
 * @param {typeof fetch} [options.fetchImpl]
 * @param {AbortSignal} [options.signal]
 * @returns {Promise<ReturnType<typeof parsePeaks>>}
 * @throws {ApiError} for an error answer; {Error} for a file parsePeaks refuses; the fetch's own errors
 */
export async function fetchPeaks(
  peaksUrl,
  { base = globalThis.document?.baseURI, fetchImpl = globalThis.fetch?.bind(globalThis), signal } = {},
) {
  const response = await fetchImpl(new URL(peaksUrl, base).href, { method: 'GET', credentials: 'omit', signal });
  if (!response.ok) {
    response.body?.cancel().catch(() => {});
    throw new ApiError(response.status, 'peaks_unavailable', `The waveform could not be loaded (${response.status}).`);
  }
  const declared = Number(response.headers.get('Content-Length'));
  if (declared > MAX_PEAKS_BYTES) {
    response.body?.cancel().catch(() => {});
    throw new Error(`Peaks are too large: ${declared} bytes, at most ${MAX_PEAKS_BYTES}.`);
  }
  return parsePeaks(await response.arrayBuffer());
}
