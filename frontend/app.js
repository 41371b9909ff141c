/**
 * The recplay web player: lists a business's recordings, filtered as the URL fragment says, and plays one at
 * a time.
 *
 * Nothing is fetched from the provider until a person presses play: a click POSTs `fetch`, the page follows
 * the recording's pushed statuses (events.js) or, when they cannot be read, polls with backoff (poll.js), and
 * once the recording is ready the audio element streams its signed URL and the waveform's peaks are fetched.
 */

import { ApiError, businessFromToken, createApi, fetchPeaks, tokenFromHash } from './api.js';
import {
  FILTER_STATUSES,
  NO_FILTERS,
  filterProblem,
  filtersFromHash,
  hasFilters,
  hashWithFilters,
  normalizeFilters,
  sameFilters,
} from './filters.js';
import { failureReason, statusLabel } from './labels.js';
import { createRow, updateRow } from './list.js';
import { Player } from './player.js';
import { abortableSleep, waitUntilReady } from './poll.js';

const PAGE_SIZE = 50;

/** A media error is repaired by re-signing the stream URL at most once in this many milliseconds. */
const MEDIA_RECOVERY_INTERVAL_MS = 60_000;

/** When a recording plays before its peaks are computed, its status is asked again after these waits. */
const PEAKS_RECHECK_MS = Object.freeze([3_000, 10_000, 30_000]);

const PROGRESS_MESSAGES = Object.freeze({
  new: 'Preparing…',
  queued: 'Queued: waiting for a download slot…',
  processing: 'Fetching the recording from the provider…',
  ready: 'Loading…',
});

const byId = (id) => document.getElementById(id);
const dom = {
  business: byId('business'),
  notice: byId('notice'),
  noticeTitle: byId('notice-title'),
  noticeText: byId('notice-text'),
  noticeAction: byId('notice-action'),
  section: byId('recordings-section'),
  list: byId('recordings'),
  skeleton: byId('list-skeleton'),
  empty: byId('empty'),
  emptyFiltered: byId('empty-filtered'),
  emptyClear: byId('empty-clear'),
  more: byId('load-more'),
  announcer: byId('announcer'),
  filters: byId('filters'),
  filterQ: byId('filter-q'),
  filterStatus: byId('filter-status'),
  filterFrom: byId('filter-from'),
  filterTo: byId('filter-to'),
  filterClear: byId('filter-clear'),
  filterError: byId('filter-error'),
};

/**
 * The signed-in view: one token, its API client and the list shown (`listing`). Replaced when the token in the
 * fragment changes; a change of filters only replaces the listing.
 */
let view = null;
/** The recording being prepared (POST fetch and polling), with the controller that cancels it. */
let preparing = null;
/** The recording shown in the player dock. */
let selectedSid = null;
/** When each recording's stream URL was last re-signed after a media error. */
const lastRecovery = new Map();
/** The peaks being fetched for the dock: `{sid, url, abort}`. */
let peaksLoad = null;
/** Cancels the status checks that wait for the dock's peaks to be computed. */
let peaksRecheck = null;
/** Peaks URLs that failed, not tried again (a fresh status brings a freshly signed URL). */
const failedPeaksUrls = new Set();

function localStore() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

const player = new Player(byId('player'), {
  onState: onPlayerState,
  onMediaError,
  freshStreamUrl,
  storage: localStore(),
});

function rowOf(sid) {
  return view?.listing.rows.get(sid) ?? null;
}

function setState(sid, state, change = {}) {
  const row = rowOf(sid);
  if (row) updateRow(row, { ...change, state });
}

function announce(text) {
  dom.announcer.textContent = '';
  // A fresh text node on the next frame is announced even when it repeats the last message.
  requestAnimationFrame(() => {
    dom.announcer.textContent = text;
  });
}

// ---- notices -------------------------------------------------------------------------------------------

function showNotice(title, text, action = null, actionLabel = 'Try again') {
  dom.noticeTitle.textContent = title;
  dom.noticeText.textContent = text;
  dom.noticeAction.hidden = !action;
  dom.noticeAction.onclick = action;
  dom.noticeAction.textContent = actionLabel;
  dom.notice.setAttribute('role', 'alert');
  dom.notice.hidden = false;
}

function hideNotice() {
  dom.notice.hidden = true;
  dom.notice.removeAttribute('role');
}

function showUnauthorized() {
  cancelPreparing();
  cancelPeaks();
  if (selectedSid) setState(selectedSid, 'idle');
  selectedSid = null;
  player.close();
  showNotice(
    'Your access link has expired',
    'This link is no longer valid. Open recplay again from your application to get a fresh link.',
  );
}

// ---- the list ------------------------------------------------------------------------------------------

function newListing(filters) {
  return { filters, rows: new Map(), nextCursor: null, loading: false, loaded: false, abort: new AbortController() };
}

function start() {
  cancelPreparing();
  cancelPeaks();
  player.close();
  selectedSid = null;
  lastRecovery.clear();
  failedPeaksUrls.clear();
  view?.listing.abort.abort();
  dom.list.replaceChildren();
  hideNotice();

  const token = tokenFromHash(window.location.hash);
  if (!token) {
    view = null;
    dom.section.hidden = true;
    dom.business.hidden = true;
    showNotice(
      'Open recplay from your application',
      'This page needs an access link: your application opens it with a token at the end of the address (#token=…).',
    );
    return;
  }
  const filters = filtersFromHash(window.location.hash);
  view = { token, api: createApi({ token }), listing: newListing(filters) };
  const business = businessFromToken(token);
  dom.business.textContent = business ?? '';
  dom.business.hidden = !business;
  dom.section.hidden = false;
  fillFilterForm(filters);
  loadPage({ moveFocus: false });
}

/** Show another list (new filters): the dock keeps playing, whether or not its recording is in the new list. */
function reloadList(filters, { announceResult = false } = {}) {
  if (!view) return;
  view.listing.abort.abort();
  view.listing = newListing(filters);
  dom.list.replaceChildren();
  dom.empty.hidden = true;
  dom.emptyFiltered.hidden = true;
  dom.more.hidden = true;
  hideNotice();
  loadPage({ moveFocus: false, announceResult });
}

/** The state a row of the recording in the dock shows when it is (re)created. */
function selectedRowState(sid) {
  if (preparing?.sid === sid) return 'preparing';
  if (player.loadedSid === sid) return player.audio.paused ? 'paused' : 'playing';
  return null;
}

async function loadPage({ moveFocus, announceResult = false }) {
  const current = view;
  const listing = current?.listing;
  if (!listing || listing.loading) return;
  const isCurrent = () => view === current && current.listing === listing;
  listing.loading = true;
  dom.list.setAttribute('aria-busy', 'true');
  dom.more.disabled = true;
  dom.more.textContent = 'Loading…';
  dom.skeleton.hidden = listing.loaded;
  try {
    const { items, nextCursor } = await current.api.listRecordings({
      cursor: listing.nextCursor,
      limit: PAGE_SIZE,
      filters: listing.filters,
      signal: listing.abort.signal,
    });
    if (!isCurrent()) return;
    hideNotice();
    const added = [];
    for (const status of items) {
      if (!status?.call_sid || listing.rows.has(status.call_sid)) continue;
      const row = createRow(status);
      const state = status.call_sid === selectedSid ? selectedRowState(status.call_sid) : null;
      if (state) updateRow(row, { state });
      listing.rows.set(status.call_sid, row);
      added.push(row);
      offerPeaks(status.call_sid, status);
    }
    dom.list.append(...added);
    listing.nextCursor = nextCursor;
    listing.loaded = true;
    if (moveFocus && added.length) added[0].querySelector('[data-action="play"]').focus();
    if (moveFocus) announce(`${added.length} more recordings`);
    else if (announceResult) announce(resultSentence(listing));
  } catch (error) {
    if (!isCurrent()) return;
    if (error instanceof ApiError && error.isUnauthorized) showUnauthorized();
    else if (error instanceof ApiError && error.httpStatus === 400 && hasFilters(listing.filters)) {
      showNotice('These filters cannot be used', error.message, () => clearFilters(), 'Clear filters');
    } else showNotice('Recordings could not be loaded', error.message, () => loadPage({ moveFocus: false }));
  } finally {
    if (isCurrent()) {
      const filtered = hasFilters(listing.filters);
      const none = listing.loaded && listing.rows.size === 0;
      listing.loading = false;
      dom.list.setAttribute('aria-busy', 'false');
      dom.skeleton.hidden = true;
      dom.empty.hidden = !none || filtered;
      dom.emptyFiltered.hidden = !none || !filtered;
      dom.more.hidden = !listing.nextCursor;
      dom.more.disabled = false;
      dom.more.textContent = 'Load more';
    }
  }
}

function resultSentence(listing) {
  const count = listing.rows.size;
  if (count === 0) return hasFilters(listing.filters) ? 'No recordings match these filters.' : 'No recordings yet.';
  const noun = count === 1 ? 'recording' : 'recordings';
  return listing.nextCursor ? `${count} ${noun} shown, more with Load more` : `${count} ${noun}`;
}

// ---- finding a recording -------------------------------------------------------------------------------

for (const status of FILTER_STATUSES) {
  const option = document.createElement('option');
  option.value = status;
  option.textContent = statusLabel(status);
  dom.filterStatus.append(option);
}

function fillFilterForm(filters) {
  dom.filterQ.value = filters.q;
  dom.filterStatus.value = filters.status;
  dom.filterFrom.value = filters.from;
  dom.filterTo.value = filters.to;
  showFilterProblem(null);
}

function readFilterForm() {
  return normalizeFilters({
    q: dom.filterQ.value,
    status: dom.filterStatus.value,
    from: dom.filterFrom.value,
    to: dom.filterTo.value,
  });
}

function showFilterProblem(problem) {
  dom.filterError.textContent = problem?.message ?? '';
  for (const input of [dom.filterFrom, dom.filterTo]) input.removeAttribute('aria-invalid');
  if (problem) {
    const field = problem.field === 'to' ? dom.filterTo : dom.filterFrom;
    field.setAttribute('aria-invalid', 'true');
    field.focus();
  }
}

/** Show the list for these filters and keep them in the fragment (a new history entry: Back undoes it). */
function applyFilters(filters) {
  if (!view) return;
  const hash = hashWithFilters(window.location.hash, filters);
  if (hash !== window.location.hash) window.history.pushState(null, '', hash);
  fillFilterForm(filters);
  reloadList(filters, { announceResult: true });
}

function clearFilters() {
  applyFilters(NO_FILTERS);
}

dom.filters.addEventListener('submit', (event) => {
  event.preventDefault();
  const filters = readFilterForm();
  const problem = filterProblem(filters);
  if (problem) {
    showFilterProblem(problem);
    return;
  }
  applyFilters(filters);
});

dom.filterClear.addEventListener('click', () => {
  const applied = view ? hasFilters(view.listing.filters) : false;
  fillFilterForm(NO_FILTERS);
  if (applied) clearFilters();
  dom.filterQ.focus();
});

dom.emptyClear.addEventListener('click', () => {
  clearFilters();
  dom.filterQ.focus();
});

/** The fragment changed (Back, Forward, a pasted link): a new token starts over, new filters reload the list. */
function onLocationChange() {
  const token = tokenFromHash(window.location.hash);
  if (!view || token !== view.token) {
    start();
    return;
  }
  const filters = filtersFromHash(window.location.hash);
  if (sameFilters(filters, view.listing.filters)) return;
  fillFilterForm(filters);
  reloadList(filters, { announceResult: true });
}

dom.more.addEventListener('click', () => loadPage({ moveFocus: true }));

dom.list.addEventListener('click', (event) => {
  const button = event.target.closest('[data-action]');
  const row = button?.closest('[data-call-sid]');
  if (!row) return;
  onPlayClicked(row.dataset.callSid);
});

// ---- playing -------------------------------------------------------------------------------------------

/** Play, pause or resume: what one press of a row's play (or retry) button means in each state. */
function onPlayClicked(sid) {
  const row = rowOf(sid);
  if (!row) return;
  const { state } = row.dataset;
  if (state === 'preparing') return; // already asked: a second press sends nothing
  if (sid === player.loadedSid && state !== 'error') {
    if (state === 'playing') player.pause();
    else player.play();
    return;
  }
  prepareAndPlay(sid);
}

function cancelPreparing() {
  if (!preparing) return;
  const { sid, abort } = preparing;
  preparing = null;
  abort.abort();
  if (rowOf(sid)?.dataset.state === 'preparing') setState(sid, 'idle');
}

async function prepareAndPlay(sid) {
  const current = view;
  cancelPreparing();
  if (selectedSid && selectedSid !== sid && rowOf(selectedSid)?.dataset.state !== 'error') {
    setState(selectedSid, 'idle');
  }
  selectedSid = sid;
  cancelPeaks();
  const abort = new AbortController();
  preparing = { sid, abort };
  const { signal } = abort;
  setState(sid, 'preparing', { reason: '' });
  player.prepare(sid, null);
  announce(`Preparing recording ${sid}`);

  try {
    const status = await waitUntilReady({
      start: () => current.api.requestMedia(sid, { signal }),
      follow: async ({ onStatus }) => (await current.api.followStatus(sid, { signal, onStatus })).status,
      fetchStatus: () => current.api.getStatus(sid, { signal }),
      sleep: abortableSleep,
      signal,
      onStatus: (latest) => {
        setState(sid, 'preparing', { status: latest });
        player.setMessage(PROGRESS_MESSAGES[latest?.status] ?? 'Preparing…');
      },
    });
    if (preparing?.abort !== abort) return;
    preparing = null;
    if (status?.status === 'ready' && status.stream_url) {
      player.load({ sid, streamUrl: status.stream_url, durationSeconds: status.duration_seconds ?? null });
      watchPeaks(sid, status);
      await player.play();
    } else {
      fail(sid, failureReason(status));
    }
  } catch (error) {
    if (signal.aborted) return;
    if (preparing?.abort === abort) preparing = null;
    handleRecordingError(sid, error);
  }
}

/** Show why a recording cannot play, with its retry button, and close the dock if it showed that one. */
function fail(sid, reason) {
  setState(sid, 'error', { reason });
  if (selectedSid === sid) {
    selectedSid = null;
    cancelPeaks();
    player.close();
  }
  announce(`Recording ${sid} cannot be played. ${reason}`);
}

function handleRecordingError(sid, error) {
  if (error instanceof ApiError && error.isUnauthorized) {
    showUnauthorized();
    return;
  }
  fail(sid, error?.message || 'Something went wrong. Try again.');
}

function onPlayerState(sid, state) {
  const row = rowOf(sid);
  if (!row || selectedSid !== sid) return;
  const before = row.dataset.state;
  if (before === state) return;
  setState(sid, state);
  if (state === 'playing' && before === 'preparing') announce(`Playing recording ${sid}`);
}

/** The audio element gave up (often an expired stream URL after a long pause): re-sign once and resume. */
async function onMediaError(sid, mediaError) {
  const current = view;
  const now = Date.now();
  if (!current || now - (lastRecovery.get(sid) ?? 0) < MEDIA_RECOVERY_INTERVAL_MS) {
    fail(sid, `The audio could not be played${mediaError?.message ? ` (${mediaError.message})` : ''}.`);
    return;
  }
  lastRecovery.set(sid, now);
  const resumeAt = player.audio.currentTime || 0;
  const wasPlaying = ['playing', 'preparing'].includes(rowOf(sid)?.dataset.state);
  try {
    const { status } = await current.api.getStatus(sid);
    if (player.loadedSid !== sid || current !== view) return;
    setState(sid, undefined, { status });
    if (status?.status !== 'ready' || !status.stream_url) {
      fail(sid, failureReason(status));
      return;
    }
    player.load({ sid, streamUrl: status.stream_url, durationSeconds: status.duration_seconds ?? null, resumeAt });
    offerPeaks(sid, status);
    if (wasPlaying) await player.play();
  } catch (error) {
    handleRecordingError(sid, error);
  }
}

async function freshStreamUrl(sid) {
  try {
    const { status } = await view.api.getStatus(sid);
    offerPeaks(sid, status);
    return status?.status === 'ready' ? status.stream_url ?? null : null;
  } catch (error) {
    handleRecordingError(sid, error);
    return null;
  }
}

// ---- the waveform --------------------------------------------------------------------------------------

/**
 * A status of `sid` arrived (from the list, a poll, an event, a recheck...): when it is the recording in the dock
 * and the waveform is missing, fetch its peaks. A status without `peaks_url` (not computed yet) leaves the dock
 * without a waveform until the next status.
 */
function offerPeaks(sid, status) {
  const url = status?.peaks_url;
  if (!sid || sid !== player.loadedSid || player.hasPeaksFor(sid)) return;
  if (typeof url !== 'string' || !url || failedPeaksUrls.has(url)) return;
  if (peaksLoad?.sid === sid) return; // already on its way
  peaksLoad?.abort.abort();
  const abort = new AbortController();
  const load = { sid, url, abort };
  peaksLoad = load;
  const channels = Array.isArray(status.channels) ? status.channels : null;
  fetchPeaks(url, { signal: abort.signal })
    .then((peaks) => {
      if (peaksLoad === load) player.setPeaks(sid, peaks, channels);
    })
    .catch((error) => {
      if (abort.signal.aborted) return;
      failedPeaksUrls.add(url);
      console.warn(`No waveform for ${sid}: ${error?.message ?? error}`);
    })
    .finally(() => {
      if (peaksLoad === load) peaksLoad = null;
    });
}

/**
 * The recording just loaded in the dock: fetch its peaks, or, when they are not computed yet, ask for its status
 * a few more times ({@link PEAKS_RECHECK_MS}) so the waveform still appears while it plays.
 */
function watchPeaks(sid, status) {
  offerPeaks(sid, status);
  if (status?.peaks_url || player.hasPeaksFor(sid)) return;
  peaksRecheck?.abort();
  const abort = new AbortController();
  peaksRecheck = abort;
  const current = view;
  (async () => {
    for (const ms of PEAKS_RECHECK_MS) {
      await abortableSleep(ms, abort.signal);
      if (view !== current || player.loadedSid !== sid || player.hasPeaksFor(sid)) return;
      const { status: latest } = await current.api.getStatus(sid, { signal: abort.signal });
      offerPeaks(sid, latest);
      if (latest?.peaks_url) return;
    }
  })()
    .catch(() => {}) // cancelled, or the request failed: the waveform is an extra, the next status may bring it
    .finally(() => {
      if (peaksRecheck === abort) peaksRecheck = null;
    });
}

function cancelPeaks() {
  peaksLoad?.abort.abort();
  peaksLoad = null;
  peaksRecheck?.abort();
  peaksRecheck = null;
}

window.addEventListener('hashchange', onLocationChange);
window.addEventListener('popstate', onLocationChange);
start();
