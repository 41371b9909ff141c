/** Preferences kept in the browser: the playback speed and skip silence. Storage is injected so tests need no browser. */

export const RATES = Object.freeze([0.5, 0.75, 1, 1.25, 1.5, 1.75, 2]);
export const RATE_KEY = 'recplay.playbackRate';
export const SKIP_SILENCE_KEY = 'recplay.skipSilence';

/**
 * The remembered speed, or 1 when none (or an unknown one) is stored.
 *
 * @param {Pick<Storage, 'getItem'>|null} storage
 * @returns {number}
 */
export function loadRate(storage) {
  try {
    const value = Number(storage?.getItem(RATE_KEY));
    return RATES.includes(value) ? value : 1;
  } catch {
    return 1; // storage can be disabled (private mode, a policy): the default is fine
  }
}

/**
 * Remember a speed; unknown speeds are not stored.
 *
 * @param {Pick<Storage, 'setItem'>|null} storage
 * @param {number} rate
 */
export function saveRate(storage, rate) {
  if (!RATES.includes(rate)) return;
  try {
    storage?.setItem(RATE_KEY, String(rate));
  } catch {
    // a full or disabled storage only means the speed is not remembered
  }
}

/**
 * The speed one step slower or faster than `rate`, staying within {@link RATES}.
 *
 * @param {number} rate
 * @param {number} step -1 or 1
 * @returns {number}
 */
export function stepRate(rate, step) {
  const index = RATES.indexOf(rate);
  const from = index === -1 ? RATES.indexOf(1) : index;
  return RATES[Math.min(RATES.length - 1, Math.max(0, from + step))];
}

/** "1×", "1.25×". */
export function formatRate(rate) {
  return `${rate}×`;
}

/**
 * Whether silences are skipped: off unless it was turned on.
 *
 * @param {Pick<Storage, 'getItem'>|null} storage
 * @returns {boolean}
 */
export function loadSkipSilence(storage) {
  try {
    return storage?.getItem(SKIP_SILENCE_KEY) === 'true';
  } catch {
    return false;
  }
}

/**
 * Remember whether silences are skipped.
 *
 * @param {Pick<Storage, 'setItem'>|null} storage
 * @param {boolean} on
 */
export function saveSkipSilence(storage, on) {
  try {
    storage?.setItem(SKIP_SILENCE_KEY, String(Boolean(on)));
  } catch {
    // not remembered: the toggle still works for this visit
  }
}
