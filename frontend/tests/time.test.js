import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { bufferedSegments, clampTime, formatTime, knownDuration, spokenDuration } from '../time.js';

function ranges(...pairs) {
  return { length: pairs.length, start: (i) => pairs[i][0], end: (i) => pairs[i][1] };
}

describe('formatTime', () => {
  it('shows minutes and seconds', () => {
    assert.equal(formatTime(0), '0:00');
    assert.equal(formatTime(7.9), '0:07');
    assert.equal(formatTime(65), '1:05');
    assert.equal(formatTime(599.99), '9:59');
  });

  it('shows hours from one hour on', () => {
    assert.equal(formatTime(3600), '1:00:00');
    assert.equal(formatTime(3723), '1:02:03');
  });

  it('shows the unknown marker for NaN, Infinity and missing values', () => {
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY, null, undefined]) assert.equal(formatTime(value), '--:--');
    assert.equal(formatTime(Number.NaN, '?'), '?');
  });

  it('never shows a negative time', () => {
    assert.equal(formatTime(-3), '0:00');
  });
});

describe('spokenDuration', () => {
  it('says the length in words', () => {
    assert.equal(spokenDuration(65), '1 minute 5 seconds');
    assert.equal(spokenDuration(1), '1 second');
    assert.equal(spokenDuration(3600), '1 hour');
    assert.equal(spokenDuration(0), '0 seconds');
    assert.equal(spokenDuration(null), 'unknown length');
  });
});

describe('knownDuration', () => {
  it('prefers the browser when it knows the duration', () => {
    assert.equal(knownDuration(10.5, 12), 10.5);
  });

  it('falls back to duration_seconds when the browser reports Infinity or NaN', () => {
    assert.equal(knownDuration(Number.POSITIVE_INFINITY, 12), 12);
    assert.equal(knownDuration(Number.NaN, 12), 12);
    assert.equal(knownDuration(0, 12), 12);
  });

  it('is null when nobody knows', () => {
    assert.equal(knownDuration(Number.NaN, null), null);
    assert.equal(knownDuration(Number.POSITIVE_INFINITY, 0), null);
  });
});

describe('clampTime', () => {
  it('keeps a time within the recording', () => {
    assert.equal(clampTime(-5, 10), 0);
    assert.equal(clampTime(15, 10), 10);
    assert.equal(clampTime(7, 10), 7);
    assert.equal(clampTime(99, null), 99);
    assert.equal(clampTime(Number.NaN, 10), 0);
  });
});

describe('bufferedSegments', () => {
  it('maps buffered ranges to percentages', () => {
    assert.deepEqual(bufferedSegments(ranges([0, 2.5], [5, 10]), 10), [
      { start: 0, end: 25 },
      { start: 50, end: 100 },
    ]);
  });

  it('clamps and drops empty ranges', () => {
    assert.deepEqual(bufferedSegments(ranges([3, 3], [8, 12]), 10), [{ start: 80, end: 100 }]);
  });

  it('is empty without a duration', () => {
    assert.deepEqual(bufferedSegments(ranges([0, 1]), null), []);
    assert.deepEqual(bufferedSegments(null, 10), []);
  });
});
