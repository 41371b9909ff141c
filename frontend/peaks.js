/**
 * Waveform peaks: BBC audiowaveform's binary `.dat` format, version 2, 8-bit values. Pure: no DOM, no network.
 *
 * Layout (little-endian): int32 version (2), uint32 flags (1: bit 0 set means 8-bit samples), int32 sample_rate,
 * int32 samples_per_pixel, uint32 length (pixels per channel), int32 channels; then for each pixel i in
 * 0..length-1 and each channel c: int8 min, int8 max. Pixel i covers [i * spp / rate, (i + 1) * spp / rate).
 */

/** Bytes before the first pixel. */
export const HEADER_BYTES = 24;

/** The most pixels per channel the server sends (long calls get a coarser resolution instead). */
export const MAX_PIXELS = 72_000;

/** Mono or two channels (agent and caller); anything else is refused. */
export const MAX_CHANNELS = 2;

/** The largest valid file: the header and two 8-bit values per pixel per channel. */
export const MAX_PEAKS_BYTES = HEADER_BYTES + MAX_PIXELS * MAX_CHANNELS * 2;

const FLAG_8_BIT = 1;

function bytesOf(input) {
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  throw new TypeError('Peaks must be an ArrayBuffer or a typed array.');
}

/**
 * Read a peaks file, refusing anything that is not exactly a v2 8-bit file of a size the player accepts.
 *
 * @param {ArrayBuffer|ArrayBufferView} input the response body
 * @returns {{sampleRate: number, samplesPerPixel: number, length: number, channels: number,
 *   secondsPerPixel: number, duration: number, data: Int8Array}} `data` holds min, max per pixel per channel,
 *   interleaved as in the file (see {@link peakMin} and {@link peakMax})
 * @throws {Error} when the file is truncated, too large, or of another version or sample size
 */
export function parsePeaks(input) {
  const bytes = bytesOf(input);
  if (bytes.byteLength < HEADER_BYTES) {
    throw new Error(`Peaks are truncated: ${bytes.byteLength} bytes, the header alone is ${HEADER_BYTES}.`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getInt32(0, true);
  if (version !== 2) throw new Error(`Peaks version ${version} is not supported (expected 2).`);
  const flags = view.getUint32(4, true);
  if (flags !== FLAG_8_BIT) throw new Error(`Peaks flags ${flags} are not supported (expected 1: 8-bit values).`);
  const sampleRate = view.getInt32(8, true);
  const samplesPerPixel = view.getInt32(12, true);
  const length = view.getUint32(16, true);
  const channels = view.getInt32(20, true);
  if (sampleRate <= 0) throw new Error(`Peaks sample rate ${sampleRate} is not positive.`);
  if (samplesPerPixel <= 0) throw new Error(`Peaks samples per pixel ${samplesPerPixel} is not positive.`);
  if (channels < 1 || channels > MAX_CHANNELS) {
    throw new Error(`Peaks with ${channels} channels are not supported (1 or ${MAX_CHANNELS}).`);
  }
  if (length > MAX_PIXELS) throw new Error(`Peaks are too large: ${length} pixels, at most ${MAX_PIXELS}.`);
  const expected = HEADER_BYTES + length * channels * 2;
  if (bytes.byteLength < expected) {
    throw new Error(`Peaks are truncated: ${bytes.byteLength} bytes, the header announces ${expected}.`);
  }
  if (bytes.byteLength > expected) {
    throw new Error(`Peaks are too large: ${bytes.byteLength} bytes, the header announces ${expected}.`);
  }
  const data = new Int8Array(length * channels * 2);
  data.set(new Int8Array(bytes.buffer, bytes.byteOffset + HEADER_BYTES, data.length));
  const secondsPerPixel = samplesPerPixel / sampleRate;
  return {
    sampleRate,
    samplesPerPixel,
    length,
    channels,
    secondsPerPixel,
    duration: (length * samplesPerPixel) / sampleRate,
    data,
  };
}

/** The minimum of pixel `i` in channel `c`, -128 to 127. */
export function peakMin(peaks, i, c) {
  return peaks.data[(i * peaks.channels + c) * 2];
}

/** The maximum of pixel `i` in channel `c`, -128 to 127. */
export function peakMax(peaks, i, c) {
  return peaks.data[(i * peaks.channels + c) * 2 + 1];
}

/**
 * The loudest value in the recording, over every channel: 0 to 128.
 *
 * @param {{data: Int8Array}} peaks
 * @returns {number}
 */
export function maxAmplitude(peaks) {
  let loudest = 0;
  for (const value of peaks.data) {
    const magnitude = value < 0 ? -value : value;
    if (magnitude > loudest) loudest = magnitude;
  }
  return loudest;
}

/**
 * One channel's peaks resampled to `columns` equal slices of `duration` seconds, for drawing.
 *
 * Each column takes the lowest minimum and the highest maximum of the pixels it overlaps (at least one
 * pixel, so no column is blank when the peaks are coarser than the screen). Columns past the end of the
 * peaks are marked empty.
 *
 * @param {ReturnType<typeof parsePeaks>} peaks
 * @param {number} channel 0-based
 * @param {number} columns how many slices (canvas pixels)
 * @param {number} [duration] seconds the columns span; the peaks' own length by default
 * @returns {{min: Int8Array, max: Int8Array, filled: Uint8Array}} `filled[x]` is 1 when column x has data
 */
export function bucketPeaks(peaks, channel, columns, duration = peaks.duration) {
  const count = Math.max(0, Math.floor(columns));
  const min = new Int8Array(count);
  const max = new Int8Array(count);
  const filled = new Uint8Array(count);
  if (!(duration > 0) || peaks.length === 0) return { min, max, filled };
  const pixelsPerColumn = duration / peaks.secondsPerPixel / count;
  for (let x = 0; x < count; x += 1) {
    const first = Math.floor(x * pixelsPerColumn + 1e-9);
    if (first >= peaks.length) break;
    const end = Math.min(peaks.length, Math.max(first + 1, Math.ceil((x + 1) * pixelsPerColumn - 1e-9)));
    let low = 127;
    let high = -128;
    for (let i = first; i < end; i += 1) {
      const offset = (i * peaks.channels + channel) * 2;
      const a = peaks.data[offset];
      const b = peaks.data[offset + 1];
      if (a < low) low = a;
      if (b > high) high = b;
    }
    min[x] = low;
    max[x] = high;
    filled[x] = 1;
  }
  return { min, max, filled };
}
