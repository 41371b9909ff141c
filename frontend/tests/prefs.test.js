import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  RATES,
  RATE_KEY,
  SKIP_SILENCE_KEY,
  formatRate,
  loadRate,
  loadSkipSilence,
  saveRate,
  saveSkipSilence,
  stepRate,
} from '../prefs.js';

function memoryStorage(initial = {}) {
  const data = new Map(Object.entries(initial));
  return {
    data,
    getItem: (key) => (data.has(key) ? data.get(key) : null),
    setItem: (key, value) => data.set(key, String(value)),
  };
}

describe('playback speed preference', () => {
  it('offers 0.5x to 2x', () => {
    assert.deepEqual(RATES, [0.5, 0.75, 1, 1.25, 1.5, 1.75, 2]);
  });

  it('remembers a speed', () => {
    const storage = memoryStorage();
    saveRate(storage, 1.5);
    assert.equal(storage.data.get(RATE_KEY), '1.5');
    assert.equal(loadRate(storage), 1.5);
  });

  it('starts at 1x without a stored speed, or with an unknown one', () => {
    assert.equal(loadRate(memoryStorage()), 1);
    assert.equal(loadRate(memoryStorage({ [RATE_KEY]: '16' })), 1);
    assert.equal(loadRate(memoryStorage({ [RATE_KEY]: 'fast' })), 1);
    assert.equal(loadRate(null), 1);
  });

  it('does not store an unknown speed', () => {
    const storage = memoryStorage();
    saveRate(storage, 3);
    assert.equal(storage.data.size, 0);
  });

  it('survives a storage that throws', () => {
    const broken = {
      getItem() {
        throw new Error('denied');
      },
      setItem() {
        throw new Error('full');
      },
    };
    assert.equal(loadRate(broken), 1);
    assert.doesNotThrow(() => saveRate(broken, 2));
  });

  it('steps within the offered speeds', () => {
    assert.equal(stepRate(1, 1), 1.25);
    assert.equal(stepRate(1, -1), 0.75);
    assert.equal(stepRate(2, 1), 2);
    assert.equal(stepRate(0.5, -1), 0.5);
    assert.equal(stepRate(1.1, 1), 1.25);
  });

  it('labels a speed', () => {
    assert.equal(formatRate(1.25), '1.25×');
  });
});

describe('skip silence preference', () => {
  it('is off by default', () => {
    assert.equal(loadSkipSilence(memoryStorage()), false);
    assert.equal(loadSkipSilence(null), false);
    assert.equal(loadSkipSilence(memoryStorage({ [SKIP_SILENCE_KEY]: 'yes' })), false);
  });

  it('is remembered on and off', () => {
    const storage = memoryStorage();
    saveSkipSilence(storage, true);
    assert.equal(storage.data.get(SKIP_SILENCE_KEY), 'true');
    assert.equal(loadSkipSilence(storage), true);
    saveSkipSilence(storage, false);
    assert.equal(loadSkipSilence(storage), false);
  });

  it('survives a storage that throws', () => {
    const broken = {
      getItem() {
        throw new Error('denied');
      },
      setItem() {
        throw new Error('full');
      },
    };
    assert.equal(loadSkipSilence(broken), false);
    assert.doesNotThrow(() => saveSkipSilence(broken, true));
  });
});
