import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parsePeaks } from '../peaks.js';
import { MIN_JUMP_SECONDS, SKIP_LEAD_SECONDS, findSilences, skipTarget, skippableSeconds } from '../silence.js';
import { peaksFile, pixelsFromRuns } from './peaks-fixtures.js';

/** Peaks at 20 pixels per second from [seconds, level] runs. */
function peaksOf(runs, channels = 1) {
  return parsePeaks(peaksFile(pixelsFromRuns(runs, channels)));
}

function rounded(stretches) {
  return stretches.map(([start, end]) => [Math.round(start * 1000) / 1000, Math.round(end * 1000) / 1000]);
}

describe('findSilences', () => {
  it('finds a silence longer than 2 s in the middle', () => {
    assert.deepEqual(rounded(findSilences(peaksOf([[1, 'loud'], [3, 'quiet'], [1, 'loud']]))), [[1, 4]]);
  });

  it('finds silences at the very start and the very end', () => {
    const peaks = peaksOf([[2.5, 'quiet'], [1, 'loud'], [4, 'quiet']]);
    assert.deepEqual(rounded(findSilences(peaks)), [[0, 2.5], [3.5, 7.5]]);
  });

  it('finds a recording that is silent throughout', () => {
    assert.deepEqual(rounded(findSilences(peaksOf([[5, 'quiet']]))), [[0, 5]]);
  });

  it('ignores silences of 2 s or less', () => {
    assert.deepEqual(findSilences(peaksOf([[2, 'quiet'], [1, 'loud'], [2, 'quiet'], [1, 'loud'], [1.95, 'quiet']])), []);
    assert.deepEqual(rounded(findSilences(peaksOf([[1, 'loud'], [2.05, 'quiet'], [1, 'loud']]))), [[1, 3.05]]);
  });

  it('counts values of 3 as silent and 4 as sound', () => {
    assert.deepEqual(rounded(findSilences(peaksOf([[3, 3]]))), [[0, 3]]);
    assert.deepEqual(findSilences(peaksOf([[3, 4]])), []);
  });

  it('is cut by a single loud pixel', () => {
    assert.deepEqual(rounded(findSilences(peaksOf([[1.5, 'quiet'], [0.05, 'loud'], [1.5, 'quiet']]))), []);
    assert.deepEqual(rounded(findSilences(peaksOf([[2.5, 'quiet'], [0.05, 'loud'], [2.5, 'quiet']]))), [
      [0, 2.5],
      [2.55, 5.05],
    ]);
  });

  it('needs every channel to be quiet', () => {
    const pixels = pixelsFromRuns([[3, 'quiet']], 2);
    pixels[30][1] = [-2, 40]; // the caller speaks at 1.5 s, the agent stays quiet
    assert.deepEqual(rounded(findSilences(parsePeaks(peaksFile(pixels)))), []);
    assert.deepEqual(rounded(findSilences(peaksOf([[3, 'quiet']], 2))), [[0, 3]]);
  });

  it('looks at the minimum as well as the maximum', () => {
    const pixels = pixelsFromRuns([[3, 'quiet']]);
    pixels[30][0] = [-60, 1]; // at 1.5 s: neither side is longer than 2 s
    assert.deepEqual(findSilences(parsePeaks(peaksFile(pixels))), []);
  });

  it('honours the threshold and minimum length it is given', () => {
    const peaks = peaksOf([[1, 'loud'], [1.5, 10], [1, 'loud']]);
    assert.deepEqual(findSilences(peaks), []);
    assert.deepEqual(rounded(findSilences(peaks, { threshold: 10, minSeconds: 1 })), [[1, 2.5]]);
  });

  it('uses the pixel duration of the file', () => {
    // 16 kHz at 1600 samples per pixel: 0.1 s per pixel; 25 quiet pixels are 2.5 s.
    const pixels = [...pixelsFromRuns([[0.25, 'loud']]).slice(0, 2), ...Array.from({ length: 25 }, () => [[0, 0]])];
    const peaks = parsePeaks(peaksFile(pixels, { sampleRate: 16000, samplesPerPixel: 1600 }));
    assert.deepEqual(rounded(findSilences(peaks)), [[0.2, 2.7]]);
  });

  it('finds nothing in an empty or loud recording', () => {
    assert.deepEqual(findSilences(parsePeaks(peaksFile([], { channels: 1 }))), []);
    assert.deepEqual(findSilences(peaksOf([[10, 'loud']])), []);
  });
});

describe('skipTarget', () => {
  const stretches = [[0, 2.5], [10, 14], [20, 21], [30, 40]];

  it('jumps to a quarter second before the sound resumes', () => {
    assert.equal(SKIP_LEAD_SECONDS, 0.25);
    assert.equal(skipTarget(stretches, 10), 13.75);
    assert.equal(skipTarget(stretches, 12.1), 13.75);
    assert.equal(skipTarget(stretches, 30.5), 39.75);
  });

  it('skips a silence at the very start', () => {
    assert.equal(skipTarget(stretches, 0), 2.25);
  });

  it('plays on outside silences', () => {
    for (const time of [2.5, 5, 9.99, 14, 25, 40, 100, -1]) assert.equal(skipTarget(stretches, time), null, String(time));
  });

  it('does not jump again after landing, nor for a jump shorter than half a second', () => {
    assert.equal(MIN_JUMP_SECONDS, 0.5);
    assert.equal(skipTarget(stretches, 13.75), null);
    assert.equal(skipTarget(stretches, 13.7), null);
    assert.equal(skipTarget(stretches, 13.3), null);
    assert.equal(skipTarget(stretches, 13.2), 13.75);
  });

  it('leaves silences of 2 s or less alone', () => {
    assert.equal(skipTarget(stretches, 20.2), null);
    assert.equal(skipTarget([[5, 7]], 5), null);
  });

  it('is null for no stretches or no time', () => {
    assert.equal(skipTarget([], 3), null);
    assert.equal(skipTarget(stretches, Number.NaN), null);
  });

  it('follows the options it is given', () => {
    assert.equal(skipTarget(stretches, 10, { lead: 0 }), 14);
    assert.equal(skipTarget(stretches, 20, { minSeconds: 0.5 }), 20.75);
  });
});

describe('skippableSeconds', () => {
  it('adds up what skipping saves', () => {
    assert.equal(skippableSeconds([[0, 2.5], [10, 14]]), 2.25 + 3.75);
    assert.equal(skippableSeconds([]), 0);
  });
});
