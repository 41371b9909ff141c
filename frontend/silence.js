/**
 * Silence in a recording, found from its waveform peaks, and where "skip silence" jumps to. Pure.
 */

/** A pixel is silent when every channel's |min| and |max| are at most 3 of 127: about 2 % of full scale. */
export const SILENCE_THRESHOLD = 3;

/** Only silences longer than this many seconds are skipped. */
export const MIN_SILENCE_SECONDS = 2;

/** Skipping lands this many seconds before the sound resumes, so its first syllable is not cut. */
export const SKIP_LEAD_SECONDS = 0.25;

/** A jump shorter than this is not worth making (it also keeps a landing just short of the target from looping). */
export const MIN_JUMP_SECONDS = 0.5;

/**
 * The silent stretches of a recording: runs of pixels where every channel's |min| and |max| are at most
 * `threshold`, lasting strictly longer than `minSeconds`.
 *
 * @param {{length: number, channels: number, sampleRate: number, samplesPerPixel: number, data: Int8Array}} peaks
 * @param {{threshold?: number, minSeconds?: number}} [options]
 * @returns {[number, number][]} [startSeconds, endSeconds] pairs, in order, not overlapping
 */
export function findSilences(peaks, { threshold = SILENCE_THRESHOLD, minSeconds = MIN_SILENCE_SECONDS } = {}) {
  const { length, channels, sampleRate, samplesPerPixel, data } = peaks;
  const stretches = [];
  const timeOf = (pixel) => (pixel * samplesPerPixel) / sampleRate;
  const close = (first, end) => {
    const start = timeOf(first);
    const stop = timeOf(end);
    if (stop - start > minSeconds) stretches.push([start, stop]);
  };
  let runStart = -1;
  for (let i = 0; i < length; i += 1) {
    let silent = true;
    for (let offset = i * channels * 2, last = offset + channels * 2; offset < last; offset += 1) {
      const value = data[offset];
      if (value > threshold || value < -threshold) {
        silent = false;
        break;
      }
    }
    if (silent && runStart < 0) runStart = i;
    else if (!silent && runStart >= 0) {
      close(runStart, i);
      runStart = -1;
    }
  }
  if (runStart >= 0) close(runStart, length);
  return stretches;
}

/**
 * Where to jump from `time` when it is inside a silence longer than `minSeconds`: just before the silence ends.
 *
 * @param {[number, number][]} stretches from {@link findSilences}, in order
 * @param {number} time the current time in seconds
 * @param {{lead?: number, minJump?: number, minSeconds?: number}} [options]
 * @returns {number|null} the time to jump to, or null to play on
 */
export function skipTarget(
  stretches,
  time,
  { lead = SKIP_LEAD_SECONDS, minJump = MIN_JUMP_SECONDS, minSeconds = MIN_SILENCE_SECONDS } = {},
) {
  if (!Number.isFinite(time)) return null;
  let low = 0;
  let high = stretches.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const [start, end] = stretches[middle];
    if (time < start) high = middle - 1;
    else if (time >= end) low = middle + 1;
    else {
      if (end - start <= minSeconds) return null;
      const target = Math.max(start, end - lead);
      return target - time >= minJump ? target : null;
    }
  }
  return null;
}

/**
 * Seconds of silence that skipping saves over the whole recording.
 *
 * @param {[number, number][]} stretches
 * @param {number} [lead]
 * @returns {number}
 */
export function skippableSeconds(stretches, lead = SKIP_LEAD_SECONDS) {
  return stretches.reduce((total, [start, end]) => total + Math.max(0, end - lead - start), 0);
}
