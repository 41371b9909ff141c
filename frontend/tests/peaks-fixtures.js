/** Synthetic peaks files for the tests: a v2 8-bit audiowaveform `.dat` from a list of pixels. */

/**
 * Bytes of a peaks file.
 *
 * @param {number[][][]} pixels for each pixel, for each channel, [min, max]
 * @param {{version?: number, flags?: number, sampleRate?: number, samplesPerPixel?: number, channels?: number,
 *   length?: number}} [header] overrides, to build bad files
 * @returns {ArrayBuffer}
 */
export function peaksFile(pixels, header = {}) {
  const channels = header.channels ?? pixels[0]?.length ?? 1;
  const {
    version = 2,
    flags = 1,
    sampleRate = 8000,
    samplesPerPixel = 400,
    length = pixels.length,
  } = header;
  const values = pixels.flatMap((pixel) => pixel.flat());
  const buffer = new ArrayBuffer(24 + values.length);
  const view = new DataView(buffer);
  view.setInt32(0, version, true);
  view.setUint32(4, flags, true);
  view.setInt32(8, sampleRate, true);
  view.setInt32(12, samplesPerPixel, true);
  view.setUint32(16, length, true);
  view.setInt32(20, channels, true);
  new Int8Array(buffer, 24).set(values);
  return buffer;
}

/**
 * Pixels at 20 per second (8000 Hz, 400 samples per pixel) from runs of seconds: each run is loud or quiet.
 *
 * @param {[number, 'loud'|'quiet'|number][]} runs [seconds, level] where a number is the |value| used
 * @param {number} [channels]
 * @returns {number[][][]}
 */
export function pixelsFromRuns(runs, channels = 1) {
  const pixels = [];
  for (const [seconds, level] of runs) {
    const value = level === 'loud' ? 90 : level === 'quiet' ? 1 : level;
    for (let i = 0; i < Math.round(seconds * 20); i += 1) {
      pixels.push(Array.from({ length: channels }, () => [-value, value]));
    }
  }
  return pixels;
}
