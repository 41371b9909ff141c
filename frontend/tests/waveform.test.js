import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DEFAULT_LANE_LABELS, MAX_GAIN, laneLabels, laneRects, timeAtOffset, waveGain } from '../waveform.js';

describe('timeAtOffset', () => {
  it('maps a point to its time', () => {
    assert.equal(timeAtOffset(0, 800, 20), 0);
    assert.equal(timeAtOffset(400, 800, 20), 10);
    assert.equal(timeAtOffset(800, 800, 20), 20);
    assert.equal(timeAtOffset(200, 800, 60), 15);
  });

  it('keeps a drag past either edge within the recording', () => {
    assert.equal(timeAtOffset(-50, 800, 20), 0);
    assert.equal(timeAtOffset(900, 800, 20), 20);
  });

  it('is null without a width or a duration', () => {
    assert.equal(timeAtOffset(10, 0, 20), null);
    assert.equal(timeAtOffset(10, 800, null), null);
    assert.equal(timeAtOffset(10, 800, 0), null);
    assert.equal(timeAtOffset(Number.NaN, 800, 20), null);
  });
});

describe('laneLabels', () => {
  it('needs no label for mono', () => {
    assert.deepEqual(laneLabels(['agent'], 1), []);
    assert.deepEqual(laneLabels(null, 1), []);
  });

  it("uses the registration's labels", () => {
    assert.deepEqual(laneLabels(['agent', 'caller'], 2), ['agent', 'caller']);
    assert.deepEqual(laneLabels([' Agent ', 'Customer'], 2), ['Agent', 'Customer']);
  });

  it('falls back to Left and Right', () => {
    assert.deepEqual(DEFAULT_LANE_LABELS, ['Left', 'Right']);
    assert.deepEqual(laneLabels(null, 2), ['Left', 'Right']);
    assert.deepEqual(laneLabels([], 2), ['Left', 'Right']);
    assert.deepEqual(laneLabels(['agent'], 2), ['agent', 'Right']);
    assert.deepEqual(laneLabels(['', 7], 2), ['Left', 'Right']);
    assert.deepEqual(laneLabels('agent,caller', 2), ['Left', 'Right']);
  });
});

describe('laneRects', () => {
  it('gives one lane the whole height', () => {
    assert.deepEqual(laneRects(96, 1, 8), [{ top: 0, height: 96 }]);
  });

  it('shares the height between two lanes, a gap apart, the second flush with the bottom', () => {
    assert.deepEqual(laneRects(128, 2, 8), [{ top: 0, height: 60 }, { top: 68, height: 60 }]);
    assert.deepEqual(laneRects(129, 2, 8), [{ top: 0, height: 60 }, { top: 69, height: 60 }]);
  });
});

describe('waveGain', () => {
  it('enlarges a quiet recording so its loudest peak nearly fills the lane', () => {
    assert.equal(waveGain(60), 2);
    assert.equal(waveGain(30), 4);
  });

  it('never shrinks a loud recording nor enlarges beyond the limit', () => {
    assert.equal(waveGain(128), 1);
    assert.equal(waveGain(120), 1);
    assert.equal(waveGain(3), MAX_GAIN);
    assert.equal(waveGain(0), 1);
  });
});
