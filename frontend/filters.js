/**
 * Finding a recording: the list's filters, kept in the URL fragment beside the token
 * (`#token=...&q=CA12&status=ready&from=2026-11-01&to=2026-11-29`) so a reload or a shared link shows the
 * same list. The fragment never reaches a server; the filters go to the API as query parameters, the token
 * only in the Authorization header. Pure: no DOM.
 */

/** The filters, in the order they appear in the fragment and in the API's query. */
export const FILTER_NAMES = Object.freeze(['q', 'status', 'from', 'to']);

/** The statuses the API filters on. */
export const FILTER_STATUSES = Object.freeze(['new', 'queued', 'processing', 'ready', 'failed']);

/** No filter: every recording. */
export const NO_FILTERS = Object.freeze({ q: '', status: '', from: '', to: '' });

/** The longest call sid prefix sent (a pasted paragraph is cut, not sent). */
export const MAX_QUERY_LENGTH = 64;

/**
 * True for a real calendar day written YYYY-MM-DD.
 *
 * @param {string} text
 * @returns {boolean}
 */
export function isIsoDate(text) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(text ?? ''));
  if (!match) return false;
  const [year, month, day] = match.slice(1).map(Number);
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/**
 * Filters with every value usable: the prefix trimmed (and cut at {@link MAX_QUERY_LENGTH}), an unknown status
 * or an unreadable date dropped.
 *
 * @param {{q?: unknown, status?: unknown, from?: unknown, to?: unknown}|null|undefined} raw
 * @returns {{q: string, status: string, from: string, to: string}}
 */
export function normalizeFilters(raw) {
  const text = (value) => (typeof value === 'string' ? value.trim() : '');
  const q = text(raw?.q).slice(0, MAX_QUERY_LENGTH);
  const status = FILTER_STATUSES.includes(text(raw?.status)) ? text(raw?.status) : '';
  const from = isIsoDate(text(raw?.from)) ? text(raw?.from) : '';
  const to = isIsoDate(text(raw?.to)) ? text(raw?.to) : '';
  return { q, status, from, to };
}

/** True when any filter is set. */
export function hasFilters(filters) {
  return FILTER_NAMES.some((name) => Boolean(filters?.[name]));
}

/** True when two sets of filters select the same recordings. */
export function sameFilters(a, b) {
  const left = normalizeFilters(a);
  const right = normalizeFilters(b);
  return FILTER_NAMES.every((name) => left[name] === right[name]);
}

/**
 * What is wrong with filters a person entered, before anything is sent.
 *
 * @param {{from: string, to: string}} filters normalized
 * @returns {{field: 'to', message: string}|null}
 */
export function filterProblem(filters) {
  if (filters.from && filters.to && filters.to < filters.from) {
    return { field: 'to', message: 'The "to" date is before the "from" date.' };
  }
  return null;
}

/**
 * The filters in a URL fragment.
 *
 * @param {string} hash `location.hash`
 * @returns {{q: string, status: string, from: string, to: string}}
 */
export function filtersFromHash(hash) {
  const params = new URLSearchParams(String(hash ?? '').replace(/^#/, ''));
  return normalizeFilters(Object.fromEntries(FILTER_NAMES.map((name) => [name, params.get(name) ?? ''])));
}

/**
 * A URL fragment with these filters: the token and any other parameter kept where they were, empty filters
 * left out.
 *
 * @param {string} hash the current `location.hash`
 * @param {{q?: string, status?: string, from?: string, to?: string}} filters
 * @returns {string} starting with `#` (just `#` when nothing is left)
 */
export function hashWithFilters(hash, filters) {
  const params = new URLSearchParams(String(hash ?? '').replace(/^#/, ''));
  const wanted = normalizeFilters(filters);
  for (const name of FILTER_NAMES) params.delete(name);
  for (const name of FILTER_NAMES) if (wanted[name]) params.append(name, wanted[name]);
  return `#${params}`;
}

/**
 * The API query parameters for these filters, empty ones left out.
 *
 * @param {{q?: string, status?: string, from?: string, to?: string}|null|undefined} filters
 * @returns {[string, string][]}
 */
export function filterParams(filters) {
  const wanted = normalizeFilters(filters);
  return FILTER_NAMES.filter((name) => wanted[name]).map((name) => [name, wanted[name]]);
}
