/** Times and timelines: pure helpers for the player's clock and seek bar. */

/**
 * `m:ss`, or `h:mm:ss` from one hour on.
 *
 * @param {number|null|undefined} seconds
 * @param {string} [unknown] what to show when the time is not known
 * @returns {string}
 */
export function formatTime(seconds, unknown = '--:--') {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return unknown;
  const whole = Math.max(0, Math.floor(seconds));
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/**
 * A duration in words, for screen readers: "1 minute 5 seconds".
 *
 * @param {number|null|undefined} seconds
 * @returns {string}
 */
export function spokenDuration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return 'unknown length';
  const whole = Math.max(0, Math.round(seconds));
  const parts = [];
  const units = [
    [Math.floor(whole / 3600), 'hour'],
    [Math.floor((whole % 3600) / 60), 'minute'],
    [whole % 60, 'second'],
  ];
  for (const [n, unit] of units) if (n > 0) parts.push(`${n} ${unit}${n === 1 ? '' : 's'}`);
  return parts.length ? parts.join(' ') : '0 seconds';
}

/**
 * The duration to show and seek against: the browser's when it knows it, else the catalog's.
 *
 * Browsers report `Infinity` or `NaN` for some streams until they have read the end.
 *
 * @param {number} mediaDuration `audio.duration`
 * @param {number|null|undefined} catalogSeconds the status object's `duration_seconds`
 * @returns {number|null}
 */
export function knownDuration(mediaDuration, catalogSeconds) {
  if (Number.isFinite(mediaDuration) && mediaDuration > 0) return mediaDuration;
  if (typeof catalogSeconds === 'number' && Number.isFinite(catalogSeconds) && catalogSeconds > 0) return catalogSeconds;
  return null;
}

/**
 * A time kept inside the recording.
 *
 * @param {number} seconds
 * @param {number|null} duration
 * @returns {number}
 */
export function clampTime(seconds, duration) {
  const floor = Math.max(0, Number.isFinite(seconds) ? seconds : 0);
  return duration == null ? floor : Math.min(floor, duration);
}

/**
 * Buffered ranges as percentages of the duration, for drawing on the seek bar.
 *
 * @param {{length: number, start(i: number): number, end(i: number): number}} ranges `audio.buffered`
 * @param {number|null} duration
 * @returns {{start: number, end: number}[]} percentages in [0, 100], in order
 */
export function bufferedSegments(ranges, duration) {
  if (!ranges || duration == null || !(duration > 0)) return [];
  const segments = [];
  for (let i = 0; i < ranges.length; i += 1) {
    const start = Math.min(100, Math.max(0, (ranges.start(i) / duration) * 100));
    const end = Math.min(100, Math.max(0, (ranges.end(i) / duration) * 100));
    if (end > start) segments.push({ start, end });
  }
  return segments;
}
