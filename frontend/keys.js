/** The player's keyboard: which key does what, as data, so the mapping is tested without a browser. */

/** Seconds an arrow key moves; with Shift, or J and L, the longer step. */
export const SHORT_STEP = 5;
export const LONG_STEP = 10;

/**
 * The action for a key press while the player has focus, or null for keys the player leaves alone.
 *
 * Space or K: play/pause. Left/Right: 5 s back/forward (10 s with Shift); J/L: 10 s. M: mute.
 * 0 to 9: jump to 0 % to 90 %. Home/End: start/end. `<` and `>`: slower/faster. S: skip silence on/off.
 *
 * @param {{key: string, ctrlKey?: boolean, metaKey?: boolean, altKey?: boolean, shiftKey?: boolean}} event
 * @returns {{type: 'toggle'}|{type: 'mute'}|{type: 'skipSilence'}|{type: 'seekBy', seconds: number}|{type: 'seekToFraction', fraction: number}|{type: 'rateStep', step: number}|null}
 */
export function keyAction(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return null;
  const step = event.shiftKey ? LONG_STEP : SHORT_STEP;
  switch (event.key) {
    case ' ':
    case 'Spacebar':
    case 'k':
    case 'K':
      return { type: 'toggle' };
    case 'ArrowLeft':
      return { type: 'seekBy', seconds: -step };
    case 'ArrowRight':
      return { type: 'seekBy', seconds: step };
    case 'j':
    case 'J':
      return { type: 'seekBy', seconds: -LONG_STEP };
    case 'l':
    case 'L':
      return { type: 'seekBy', seconds: LONG_STEP };
    case 'm':
    case 'M':
      return { type: 'mute' };
    case 's':
    case 'S':
      return { type: 'skipSilence' };
    case 'Home':
      return { type: 'seekToFraction', fraction: 0 };
    case 'End':
      return { type: 'seekToFraction', fraction: 1 };
    case '<':
      return { type: 'rateStep', step: -1 };
    case '>':
      return { type: 'rateStep', step: 1 };
    default:
      break;
  }
  if (/^[0-9]$/.test(event.key)) return { type: 'seekToFraction', fraction: Number(event.key) / 10 };
  return null;
}

/**
 * True when a key press belongs to the focused control rather than to the player: text fields and the
 * speed menu keep their own keys (the seek bar does not: the player handles its arrows).
 *
 * @param {{tagName?: string, type?: string, isContentEditable?: boolean}|null} target
 * @returns {boolean}
 */
export function keyBelongsToControl(target) {
  if (!target) return false;
  if (target.isContentEditable) return true;
  const tag = String(target.tagName ?? '').toUpperCase();
  if (tag === 'SELECT' || tag === 'TEXTAREA') return true;
  if (tag === 'INPUT') return String(target.type ?? 'text').toLowerCase() !== 'range';
  return false;
}
