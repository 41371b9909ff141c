import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  HEADER_BYTES,
  MAX_PEAKS_BYTES,
  MAX_PIXELS,
  bucketPeaks,
  maxAmplitude,
  parsePeaks,
  peakMax,
  peakMin,
} from '../peaks.js';
import { peaksFile } from './peaks-fixtures.js';

describe('parsePeaks', () => {
  it('reads a v2 8-bit mono file', () => {
    const peaks = parsePeaks(peaksFile([[[-1, 2]], [[-100, 90]], [[-128, 127]]]));
    assert.equal(peaks.sampleRate, 8000);
    assert.equal(peaks.samplesPerPixel, 400);
    assert.equal(peaks.length, 3);
    assert.equal(peaks.channels, 1);
    assert.equal(peaks.secondsPerPixel, 0.05);
    assert.equal(peaks.duration, 0.15);
    assert.deepEqual([peakMin(peaks, 1, 0), peakMax(peaks, 1, 0)], [-100, 90]);
    assert.deepEqual([peakMin(peaks, 2, 0), peakMax(peaks, 2, 0)], [-128, 127]);
  });

  it('reads interleaved channels: for each pixel, each channel min then max', () => {
    const peaks = parsePeaks(peaksFile([[[-10, 11], [-20, 21]], [[-30, 31], [-40, 41]]]));
    assert.equal(peaks.channels, 2);
    assert.equal(peaks.length, 2);
    assert.deepEqual([...peaks.data], [-10, 11, -20, 21, -30, 31, -40, 41]);
    assert.equal(peakMin(peaks, 1, 1), -40);
    assert.equal(peakMax(peaks, 0, 1), 21);
  });

  it('reads from a typed array that is a window on a larger buffer', () => {
    const file = new Uint8Array(peaksFile([[[-5, 5]]]));
    const padded = new Uint8Array(file.length + 8);
    padded.set(file, 4);
    const peaks = parsePeaks(padded.subarray(4, 4 + file.length));
    assert.equal(peakMax(peaks, 0, 0), 5);
  });

  it('accepts an empty recording', () => {
    const peaks = parsePeaks(peaksFile([], { channels: 1 }));
    assert.equal(peaks.length, 0);
    assert.equal(peaks.duration, 0);
  });

  it('accepts the largest file the server sends', () => {
    const buffer = peaksFile([], { channels: 2, length: MAX_PIXELS });
    const full = new Uint8Array(MAX_PEAKS_BYTES);
    full.set(new Uint8Array(buffer));
    assert.equal(parsePeaks(full).length, MAX_PIXELS);
  });

  it('refuses another version', () => {
    assert.throws(() => parsePeaks(peaksFile([[[0, 0]]], { version: 1 })), /version 1 is not supported/);
    assert.throws(() => parsePeaks(peaksFile([[[0, 0]]], { version: 3 })), /version 3/);
  });

  it('refuses 16-bit values and unknown flags', () => {
    assert.throws(() => parsePeaks(peaksFile([[[0, 0]]], { flags: 0 })), /flags 0 are not supported/);
    assert.throws(() => parsePeaks(peaksFile([[[0, 0]]], { flags: 3 })), /flags 3/);
  });

  it('refuses a truncated header', () => {
    assert.throws(() => parsePeaks(new ArrayBuffer(0)), /truncated/);
    assert.throws(() => parsePeaks(peaksFile([[[0, 0]]]).slice(0, HEADER_BYTES - 1)), /truncated/);
  });

  it('refuses truncated pixels', () => {
    const file = peaksFile([[[-1, 1]], [[-2, 2]]]);
    assert.throws(() => parsePeaks(file.slice(0, file.byteLength - 1)), /truncated: 27 bytes, the header announces 28/);
    assert.throws(() => parsePeaks(peaksFile([[[-1, 1]]], { length: 2 })), /truncated/);
  });

  it('refuses more bytes than the header announces', () => {
    assert.throws(() => parsePeaks(peaksFile([[[-1, 1]], [[-2, 2]]], { length: 1 })), /too large/);
  });

  it('refuses more pixels than the server ever sends, before reading them', () => {
    assert.throws(() => parsePeaks(peaksFile([], { channels: 1, length: MAX_PIXELS + 1 })), /too large: 72001 pixels/);
    assert.throws(() => parsePeaks(peaksFile([], { channels: 1, length: 0xffffffff })), /too large/);
  });

  it('refuses channel counts other than 1 and 2, and a nonsense rate', () => {
    assert.throws(() => parsePeaks(peaksFile([], { channels: 0 })), /0 channels/);
    assert.throws(() => parsePeaks(peaksFile([], { channels: 3 })), /3 channels/);
    assert.throws(() => parsePeaks(peaksFile([], { channels: -1 })), /-1 channels/);
    assert.throws(() => parsePeaks(peaksFile([], { channels: 1, sampleRate: 0 })), /sample rate 0/);
    assert.throws(() => parsePeaks(peaksFile([], { channels: 1, samplesPerPixel: -400 })), /samples per pixel/);
  });

  it('refuses what is not bytes', () => {
    assert.throws(() => parsePeaks('not bytes'), TypeError);
  });
});

describe('maxAmplitude', () => {
  it('is the loudest magnitude over every channel', () => {
    assert.equal(maxAmplitude(parsePeaks(peaksFile([[[-3, 4], [-60, 20]], [[-2, 2], [0, 1]]]))), 60);
    assert.equal(maxAmplitude(parsePeaks(peaksFile([[[-128, 0]]]))), 128);
    assert.equal(maxAmplitude(parsePeaks(peaksFile([], { channels: 1 }))), 0);
  });
});

describe('bucketPeaks', () => {
  const peaks = parsePeaks(peaksFile([[[-1, 1]], [[-5, 2]], [[-2, 9]], [[-3, 3]]])); // 4 pixels, 0.2 s

  it('keeps one pixel per column when the sizes match', () => {
    const { min, max, filled } = bucketPeaks(peaks, 0, 4);
    assert.deepEqual([...min], [-1, -5, -2, -3]);
    assert.deepEqual([...max], [1, 2, 9, 3]);
    assert.deepEqual([...filled], [1, 1, 1, 1]);
  });

  it('takes the extremes of the pixels a column covers', () => {
    const { min, max } = bucketPeaks(peaks, 0, 2);
    assert.deepEqual([...min], [-5, -3]);
    assert.deepEqual([...max], [2, 9]);
  });

  it('repeats pixels when the screen is finer than the peaks', () => {
    const { min, max, filled } = bucketPeaks(peaks, 0, 8);
    assert.deepEqual([...min], [-1, -1, -5, -5, -2, -2, -3, -3]);
    assert.deepEqual([...max], [1, 1, 2, 2, 9, 9, 3, 3]);
    assert.equal(filled.every(Boolean), true);
  });

  it('leaves columns past the end of the peaks empty when the audio is longer', () => {
    const { max, filled } = bucketPeaks(peaks, 0, 4, 0.4);
    assert.deepEqual([...max], [2, 9, 0, 0]);
    assert.deepEqual([...filled], [1, 1, 0, 0]);
  });

  it('reads the asked channel', () => {
    const stereo = parsePeaks(peaksFile([[[-1, 1], [-50, 60]], [[-2, 2], [-70, 80]]]));
    assert.deepEqual([...bucketPeaks(stereo, 1, 1).max], [80]);
    assert.deepEqual([...bucketPeaks(stereo, 0, 1).min], [-2]);
  });

  it('is empty without columns or duration', () => {
    assert.equal(bucketPeaks(peaks, 0, 0).min.length, 0);
    assert.deepEqual([...bucketPeaks(peaks, 0, 2, 0).filled], [0, 0]);
  });
});
