import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { keyAction, keyBelongsToControl } from '../keys.js';

describe('keyAction', () => {
  it('toggles play with Space and K', () => {
    for (const key of [' ', 'k', 'K']) assert.deepEqual(keyAction({ key }), { type: 'toggle' });
  });

  it('seeks 5 s with the arrows and 10 s with Shift', () => {
    assert.deepEqual(keyAction({ key: 'ArrowLeft' }), { type: 'seekBy', seconds: -5 });
    assert.deepEqual(keyAction({ key: 'ArrowRight' }), { type: 'seekBy', seconds: 5 });
    assert.deepEqual(keyAction({ key: 'ArrowLeft', shiftKey: true }), { type: 'seekBy', seconds: -10 });
    assert.deepEqual(keyAction({ key: 'ArrowRight', shiftKey: true }), { type: 'seekBy', seconds: 10 });
  });

  it('seeks 10 s with J and L', () => {
    assert.deepEqual(keyAction({ key: 'j' }), { type: 'seekBy', seconds: -10 });
    assert.deepEqual(keyAction({ key: 'L' }), { type: 'seekBy', seconds: 10 });
  });

  it('mutes with M', () => {
    assert.deepEqual(keyAction({ key: 'm' }), { type: 'mute' });
    assert.deepEqual(keyAction({ key: 'M' }), { type: 'mute' });
  });

  it('turns skip silence on and off with S', () => {
    assert.deepEqual(keyAction({ key: 's' }), { type: 'skipSilence' });
    assert.deepEqual(keyAction({ key: 'S', shiftKey: true }), { type: 'skipSilence' });
    assert.equal(keyAction({ key: 's', ctrlKey: true }), null);
  });

  it('jumps to 0 % to 90 % with the digits', () => {
    for (let digit = 0; digit <= 9; digit += 1) {
      assert.deepEqual(keyAction({ key: String(digit) }), { type: 'seekToFraction', fraction: digit / 10 });
    }
  });

  it('goes to the start and the end with Home and End', () => {
    assert.deepEqual(keyAction({ key: 'Home' }), { type: 'seekToFraction', fraction: 0 });
    assert.deepEqual(keyAction({ key: 'End' }), { type: 'seekToFraction', fraction: 1 });
  });

  it('changes speed with < and >', () => {
    assert.deepEqual(keyAction({ key: '<' }), { type: 'rateStep', step: -1 });
    assert.deepEqual(keyAction({ key: '>' }), { type: 'rateStep', step: 1 });
  });

  it('leaves browser shortcuts and other keys alone', () => {
    assert.equal(keyAction({ key: 'k', ctrlKey: true }), null);
    assert.equal(keyAction({ key: 'ArrowLeft', altKey: true }), null);
    assert.equal(keyAction({ key: '5', metaKey: true }), null);
    for (const key of ['Enter', 'Tab', 'Escape', 'a', '%', 'F5', '10']) assert.equal(keyAction({ key }), null);
  });
});

describe('keyBelongsToControl', () => {
  it('gives the speed menu and text fields their own keys', () => {
    assert.equal(keyBelongsToControl({ tagName: 'SELECT' }), true);
    assert.equal(keyBelongsToControl({ tagName: 'TEXTAREA' }), true);
    assert.equal(keyBelongsToControl({ tagName: 'INPUT', type: 'text' }), true);
    assert.equal(keyBelongsToControl({ tagName: 'DIV', isContentEditable: true }), true);
  });

  it('lets the player handle keys on the seek bar, buttons and the dock itself', () => {
    assert.equal(keyBelongsToControl({ tagName: 'INPUT', type: 'range' }), false);
    assert.equal(keyBelongsToControl({ tagName: 'BUTTON' }), false);
    assert.equal(keyBelongsToControl({ tagName: 'SECTION' }), false);
    assert.equal(keyBelongsToControl(null), false);
  });
});
