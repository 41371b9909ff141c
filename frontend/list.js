/**
 * The recordings list: one row per recording, carrying `data-call-sid` and `data-state`
 * (idle, preparing, playing, paused, error). Rows are built with DOM calls; no server text is parsed as HTML.
 */

import { icon } from './icons.js';
import { failureReason, formatDate, statusLabel } from './labels.js';
import { formatTime, spokenDuration } from './time.js';

export const ROW_STATES = Object.freeze(['idle', 'preparing', 'playing', 'paused', 'error']);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

/**
 * A row for one status object. Its buttons carry `data-action` (play, retry); the list handles clicks.
 *
 * @param {object} status a status object from the API
 * @returns {HTMLLIElement}
 */
export function createRow(status) {
  const row = el('li', 'rec');
  row.dataset.callSid = status.call_sid;
  row.dataset.state = 'idle';

  const play = el('button', 'rec-play');
  play.type = 'button';
  play.dataset.action = 'play';
  play.append(icon('play'), icon('pause'), el('span', 'spinner'));

  const main = el('div', 'rec-main');
  const title = el('span', 'rec-sid', status.call_sid);
  title.title = status.call_sid; // the full sid when a narrow screen cuts it short
  title.id = `rec-${status.call_sid}`;
  const date = el('time', 'rec-date', formatDate(status.created_at));
  if (status.created_at) date.dateTime = status.created_at;
  const bars = el('span', 'eq');
  bars.setAttribute('aria-hidden', 'true');
  bars.append(el('i'), el('i'), el('i'));
  main.append(el('span', 'rec-title'), date);
  main.firstChild.append(title, bars);

  const duration = el('span', 'rec-duration');
  const pill = el('span', 'pill');

  const problem = el('div', 'rec-problem');
  const reason = el('p', 'rec-reason');
  reason.prepend(icon('alert'));
  reason.append(el('span', 'rec-reason-text'));
  const retry = el('button', 'rec-retry');
  retry.type = 'button';
  retry.dataset.action = 'retry';
  retry.append(icon('retry'), el('span', null, 'Retry'));
  retry.setAttribute('aria-describedby', `rec-${status.call_sid}`);
  problem.append(reason, retry);

  row.append(play, main, duration, pill, problem);
  const failed = status.status === 'failed';
  updateRow(row, { status, state: failed ? 'error' : 'idle', reason: failed ? failureReason(status) : '' });
  return row;
}

/**
 * Show a recording's server status (the pill) and its state in this page (the button, the highlight).
 *
 * @param {HTMLLIElement} row
 * @param {{status?: object, state?: string, reason?: string}} change
 */
export function updateRow(row, { status, state, reason }) {
  const sid = row.dataset.callSid;
  if (status) {
    const seconds = status.duration_seconds;
    const duration = row.querySelector('.rec-duration');
    const known = typeof seconds === 'number' && Number.isFinite(seconds);
    duration.textContent = known ? formatTime(seconds) : '—';
    duration.title = known ? spokenDuration(seconds) : 'Length unknown';
    const pill = row.querySelector('.pill');
    pill.dataset.status = status.status;
    pill.textContent = statusLabel(status.status);
  }
  if (state) row.dataset.state = state;
  if (reason !== undefined) row.querySelector('.rec-reason-text').textContent = reason;

  const play = row.querySelector('[data-action="play"]');
  const verb = { idle: 'Play', preparing: 'Preparing', playing: 'Pause', paused: 'Resume', error: 'Play' };
  play.setAttribute('aria-label', `${verb[row.dataset.state] ?? 'Play'} recording ${sid}`);
  play.setAttribute('aria-busy', String(row.dataset.state === 'preparing'));
}
