/** Words a person reads: status names, dates, error reasons. */

const STATUS_LABELS = Object.freeze({
  new: 'Not fetched',
  queued: 'Queued',
  processing: 'Fetching',
  ready: 'Ready',
  failed: 'Failed',
});

/**
 * The label of a server status (`new`, `queued`, `processing`, `ready`, `failed`).
 *
 * @param {string} status
 * @returns {string}
 */
export function statusLabel(status) {
  return STATUS_LABELS[status] ?? 'Unknown';
}

/**
 * A recording's date for the list, in the reader's locale and time zone.
 *
 * @param {string|null|undefined} iso ISO 8601
 * @param {{locale?: string, timeZone?: string}} [options] fixed in tests
 * @returns {string} empty when the date is missing or unreadable
 */
export function formatDate(iso, { locale, timeZone } = {}) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short', timeZone }).format(date);
}

/**
 * Why a recording cannot be played, in a sentence.
 *
 * @param {object|null} status the last status object seen
 * @returns {string}
 */
export function failureReason(status) {
  if (status?.status === 'failed') {
    const detail = typeof status.error === 'string' && status.error.trim() ? status.error.trim() : '';
    return detail ? `Could not fetch the recording: ${detail}` : 'Could not fetch the recording from the provider.';
  }
  return 'The recording is taking longer than usual to prepare. Try again in a moment.';
}
