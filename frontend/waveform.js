/**
 * The waveform in the player dock: the recording's peaks drawn on a `<canvas>`, one lane per channel (two for
 * an agent/caller recording, labelled), with the played part tinted, the buffered ranges lighter behind it and,
 * when skip silence is on, the skipped stretches dimmed and hatched. A click or a drag seeks.
 *
 * Accessibility: the waveform is a pointer shortcut and a picture, so it is hidden from assistive technology
 * (`aria-hidden`) and never takes focus. The seek bar stays the accessible control: a labelled range input with
 * its value text, driven by the same keys as before. The colours come from CSS custom properties (player.css),
 * so the light, dark and forced-colours themes apply; the bars keep 3:1 contrast with the dock.
 *
 * The backing store follows devicePixelRatio, so the bars are crisp on high-DPI screens.
 */

import { bucketPeaks, maxAmplitude } from './peaks.js';

/** Lane labels of a two-channel recording whose registration named none. */
export const DEFAULT_LANE_LABELS = Object.freeze(['Left', 'Right']);

/** CSS pixels between the two lanes. */
const LANE_GAP = 4;

/** Quiet recordings are drawn larger, up to this factor, so speech is visible; loud ones are not shrunk. */
export const MAX_GAIN = 8;

/**
 * The time at a point of the waveform.
 *
 * @param {number} offset CSS pixels from the waveform's left edge
 * @param {number} width the waveform's width in CSS pixels
 * @param {number|null} duration seconds the waveform spans
 * @returns {number|null} seconds, within [0, duration]; null when nothing is known
 */
export function timeAtOffset(offset, width, duration) {
  if (!(width > 0) || !(duration > 0) || !Number.isFinite(offset)) return null;
  return Math.min(1, Math.max(0, offset / width)) * duration;
}

/**
 * The labels of the lanes: none for mono; for two channels, the registration's labels, else Left and Right.
 *
 * @param {unknown} channels the status object's `channels` (an array of strings, or null)
 * @param {number} count the channels in the peaks
 * @returns {string[]}
 */
export function laneLabels(channels, count) {
  if (count < 2) return [];
  return Array.from({ length: count }, (_, i) => {
    const label = Array.isArray(channels) && typeof channels[i] === 'string' ? channels[i].trim() : '';
    return label || DEFAULT_LANE_LABELS[i] || `Channel ${i + 1}`;
  });
}

/**
 * Where each lane is drawn, in device pixels: the lanes share the height, `gap` apart.
 *
 * @param {number} height
 * @param {number} lanes 1 or 2
 * @param {number} gap
 * @returns {{top: number, height: number}[]}
 */
export function laneRects(height, lanes, gap) {
  if (lanes < 2) return [{ top: 0, height }];
  const each = Math.max(1, Math.floor((height - gap * (lanes - 1)) / lanes));
  return Array.from({ length: lanes }, (_, i) => ({ top: i === lanes - 1 ? height - each : i * (each + gap), height: each }));
}

/**
 * How much to enlarge the peaks so the loudest reaches nearly the lane's edge.
 *
 * @param {number} loudest the largest |value|, 0 to 128
 * @returns {number} 1 to {@link MAX_GAIN}
 */
export function waveGain(loudest) {
  if (!(loudest > 0)) return 1;
  return Math.min(MAX_GAIN, Math.max(1, 120 / loudest));
}

const FALLBACK_COLORS = Object.freeze({
  wave: '#7b8596',
  played: '#3149c9',
  playedBg: 'rgb(49 73 201 / 0.08)',
  buffered: 'rgb(127 137 153 / 0.14)',
  playhead: '#263aa6',
  hover: 'rgb(23 32 44 / 0.35)',
  silence: 'rgb(127 137 153 / 0.35)',
});

const COLOR_PROPERTIES = Object.freeze({
  wave: '--wave',
  played: '--wave-played',
  playedBg: '--wave-played-bg',
  buffered: '--wave-buffered',
  playhead: '--wave-playhead',
  hover: '--wave-hover',
  silence: '--wave-silence',
});

export class Waveform {
  /**
   * @param {HTMLElement} root the `.wave` element: a canvas and a `.wave-labels` element
   * @param {object} options
   * @param {() => {currentTime: number, duration: number|null, buffered: {start: number, end: number}[],
   *   playing: boolean}} options.timeline the audio's state now (times in seconds)
   * @param {(seconds: number) => void} options.onSeek a click, or the end of a drag
   * @param {(seconds: number|null) => void} [options.onScrub] during a drag, the time under the pointer; null at the end
   */
  constructor(root, { timeline, onSeek, onScrub = () => {} }) {
    this.root = root;
    this.canvas = root.querySelector('canvas');
    this.labels = root.querySelector('.wave-labels');
    this.context = this.canvas.getContext('2d');
    this.timeline = timeline;
    this.hooks = { onSeek, onScrub };
    this.peaks = null;
    this.gain = 1;
    this.silences = [];
    this.dimSilences = false;
    this.width = 0; // device pixels
    this.height = 0;
    this.colors = null;
    this.layers = null;
    this.layersKey = '';
    this.dragging = null; // the pointer id of a drag
    this.preview = null; // seconds under the dragging pointer
    this.hover = null; // CSS pixels under a hovering mouse
    this.frame = 0;

    this.canvas.setAttribute('aria-hidden', 'true');
    this.observeSize();
    this.observeTheme();
    this.listen();
  }

  // ---- what is shown ------------------------------------------------------------------------------------

  /**
   * Show a recording's peaks.
   *
   * @param {ReturnType<import('./peaks.js').parsePeaks>} peaks
   * @param {unknown} channels the status object's `channels`
   */
  setPeaks(peaks, channels) {
    this.peaks = peaks;
    this.gain = waveGain(maxAmplitude(peaks));
    this.layersKey = '';
    const lanes = peaks.channels >= 2 ? 2 : 1;
    this.canvas.dataset.lanes = String(lanes);
    this.root.dataset.lanes = String(lanes);
    this.labels.replaceChildren(
      ...laneLabels(channels, lanes).map((text) => {
        const label = document.createElement('span');
        label.className = 'wave-label';
        label.dataset.testid = 'lane-label';
        label.textContent = text;
        label.title = text;
        return label;
      }),
    );
    this.root.hidden = false;
    this.measure();
    this.invalidate();
  }

  /**
   * The silent stretches, drawn dimmed when `dimmed` (skip silence is on).
   *
   * @param {[number, number][]} stretches
   * @param {boolean} dimmed
   */
  setSilences(stretches, dimmed) {
    this.silences = stretches;
    this.dimSilences = Boolean(dimmed);
    this.canvas.dataset.silences = String(stretches.length);
    this.canvas.dataset.dimmed = String(this.dimSilences);
    this.layersKey = '';
    this.invalidate();
  }

  /** Hide the waveform (no recording, or no peaks yet). */
  clear() {
    this.endDrag();
    this.peaks = null;
    this.silences = [];
    this.layers = null;
    this.layersKey = '';
    this.labels.replaceChildren();
    delete this.canvas.dataset.lanes;
    delete this.root.dataset.lanes;
    this.canvas.dataset.silences = '0';
    this.root.hidden = true;
  }

  get shown() {
    return Boolean(this.peaks);
  }

  /** Redraw on the next frame (the time moved, a range was buffered...). */
  invalidate() {
    if (this.frame || !this.peaks) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  // ---- sizes and colours --------------------------------------------------------------------------------

  observeSize() {
    if (typeof ResizeObserver !== 'function') return;
    const observer = new ResizeObserver(([entry]) => {
      const exact = entry.devicePixelContentBoxSize?.[0];
      if (exact) this.resize(exact.inlineSize, exact.blockSize);
      else this.measure();
    });
    try {
      observer.observe(this.canvas, { box: 'device-pixel-content-box' });
    } catch {
      observer.observe(this.canvas);
    }
    // Zooming or moving to another screen changes the ratio without always resizing the box.
    const watchRatio = () => {
      const query = matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`);
      query.addEventListener('change', () => {
        this.measure();
        watchRatio();
      }, { once: true });
    };
    watchRatio();
  }

  measure() {
    const box = this.canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    this.resize(Math.round(box.width * ratio), Math.round(box.height * ratio));
  }

  resize(width, height) {
    if (width === this.width && height === this.height) return;
    this.width = width;
    this.height = height;
    this.canvas.width = Math.max(1, width);
    this.canvas.height = Math.max(1, height);
    this.layersKey = '';
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.draw(); // at once: a resized canvas is blank until drawn
  }

  observeTheme() {
    const reread = () => {
      this.colors = null;
      this.layersKey = '';
      this.invalidate();
    };
    for (const query of ['(prefers-color-scheme: dark)', '(forced-colors: active)', '(prefers-contrast: more)']) {
      matchMedia(query).addEventListener('change', reread);
    }
  }

  readColors() {
    const style = getComputedStyle(this.root);
    const colors = {};
    for (const [name, property] of Object.entries(COLOR_PROPERTIES)) {
      colors[name] = style.getPropertyValue(property).trim() || FALLBACK_COLORS[name];
    }
    return colors;
  }

  // ---- pointer ------------------------------------------------------------------------------------------

  listen() {
    const { canvas } = this;
    canvas.addEventListener('pointerdown', (event) => {
      if (!this.peaks || event.button !== 0 || this.dragging !== null) return;
      const time = this.timeAt(event);
      if (time == null) return;
      this.dragging = event.pointerId;
      canvas.setPointerCapture?.(event.pointerId);
      this.preview = time;
      this.hooks.onScrub(time);
      this.invalidate();
    });
    canvas.addEventListener('pointermove', (event) => {
      if (event.pointerId === this.dragging) {
        const time = this.timeAt(event);
        if (time == null) return;
        this.preview = time;
        this.hooks.onScrub(time);
      } else if (event.pointerType === 'mouse') {
        this.hover = event.clientX - canvas.getBoundingClientRect().left;
      }
      this.invalidate();
    });
    canvas.addEventListener('pointerup', (event) => {
      if (event.pointerId !== this.dragging) return;
      const time = this.timeAt(event) ?? this.preview;
      this.endDrag();
      if (time != null) this.hooks.onSeek(time);
    });
    canvas.addEventListener('pointercancel', (event) => {
      if (event.pointerId === this.dragging) this.endDrag();
    });
    canvas.addEventListener('lostpointercapture', (event) => {
      if (event.pointerId === this.dragging) this.endDrag();
    });
    canvas.addEventListener('pointerleave', () => {
      this.hover = null;
      this.invalidate();
    });
  }

  endDrag() {
    const wasDragging = this.dragging !== null;
    this.dragging = null;
    this.preview = null;
    if (wasDragging) this.hooks.onScrub(null);
    this.invalidate();
  }

  /** Seconds the waveform spans: the audio's duration when known, else the peaks'. */
  span() {
    const { duration } = this.timeline();
    if (duration > 0) return duration;
    return this.peaks?.duration > 0 ? this.peaks.duration : null;
  }

  timeAt(event) {
    const box = this.canvas.getBoundingClientRect();
    return timeAtOffset(event.clientX - box.left, box.width, this.span());
  }

  // ---- drawing ------------------------------------------------------------------------------------------

  draw() {
    const { context, width, height, peaks } = this;
    if (!peaks || width < 1 || height < 1) return;
    const { currentTime, buffered, playing } = this.timeline();
    const span = this.span();
    if (!span) return;
    this.colors ??= this.readColors();
    const { colors } = this;
    this.ensureLayers(span);

    const xAt = (time) => Math.round(Math.min(1, Math.max(0, time / span)) * width);
    const line = Math.max(1, Math.round(window.devicePixelRatio || 1));
    context.clearRect(0, 0, width, height);

    context.fillStyle = colors.buffered;
    for (const { start, end } of buffered) {
      const left = xAt(start);
      const right = xAt(end);
      if (right > left) context.fillRect(left, 0, right - left, height);
    }

    const head = xAt(this.preview ?? currentTime ?? 0);
    if (head > 0) {
      context.fillStyle = colors.playedBg;
      context.fillRect(0, 0, head, height);
      context.drawImage(this.layers.played, 0, 0, head, height, 0, 0, head, height);
    }
    if (head < width) context.drawImage(this.layers.base, head, 0, width - head, height, head, 0, width - head, height);

    if (this.hover !== null && this.preview === null) {
      const ratio = width / Math.max(1, this.canvas.getBoundingClientRect().width);
      context.fillStyle = colors.hover;
      context.fillRect(Math.min(width - line, Math.round(this.hover * ratio)), 0, line, height);
    }
    context.fillStyle = colors.playhead;
    context.fillRect(Math.min(width - line, Math.max(0, head - Math.floor(line / 2))), 0, line, height);

    // While playing, follow the audio clock every frame (timeupdate alone moves in quarter-second steps).
    if (playing && this.preview === null) this.invalidate();
  }

  /** The waveform pre-drawn twice, unplayed and played, so a frame only copies parts of them. */
  ensureLayers(span) {
    const key = [this.width, this.height, span, this.dimSilences, this.silences.length, this.gain].join('|');
    if (key === this.layersKey && this.layers) return;
    this.layersKey = key;
    const layer = () => {
      const canvas = document.createElement('canvas');
      canvas.width = this.width;
      canvas.height = this.height;
      return canvas;
    };
    this.layers ??= { base: layer(), played: layer() };
    for (const [name, color] of [['base', this.colors.wave], ['played', this.colors.played]]) {
      const canvas = this.layers[name];
      canvas.width = this.width;
      canvas.height = this.height;
      this.paint(canvas.getContext('2d'), color, span);
    }
  }

  paint(context, color, span) {
    const { peaks, width, height } = this;
    const ratio = window.devicePixelRatio || 1;
    const lanes = laneRects(height, peaks.channels >= 2 ? 2 : 1, Math.round(LANE_GAP * ratio));
    context.clearRect(0, 0, width, height);
    context.fillStyle = color;
    lanes.forEach((lane, channel) => {
      const { min, max, filled } = bucketPeaks(peaks, channel, width, span);
      const half = lane.height / 2;
      const middle = lane.top + half;
      const scale = (this.gain * half) / 128;
      for (let x = 0; x < width; x += 1) {
        if (!filled[x]) continue;
        let top = Math.max(lane.top, middle - max[x] * scale);
        let bottom = Math.min(lane.top + lane.height, middle - min[x] * scale);
        if (bottom - top < 1) {
          top = Math.floor(middle - 0.5);
          bottom = top + 1;
        }
        context.fillRect(x, top, 1, bottom - top);
      }
    });

    if (!this.dimSilences || !this.silences.length) return;
    // Skipped stretches: the bars faded, a hatch behind them.
    const step = Math.max(4, Math.round(6 * ratio));
    for (const [start, end] of this.silences) {
      const left = Math.round((start / span) * width);
      const right = Math.round((Math.min(end, span) / span) * width);
      if (right <= left) continue;
      context.save();
      context.globalCompositeOperation = 'destination-out';
      context.fillStyle = 'rgb(0 0 0 / 0.6)';
      context.fillRect(left, 0, right - left, height);
      context.globalCompositeOperation = 'destination-over';
      context.beginPath();
      context.rect(left, 0, right - left, height);
      context.clip();
      context.strokeStyle = this.colors.silence;
      context.lineWidth = Math.max(1, Math.round(ratio));
      context.beginPath();
      for (let x = left - height - (left % step); x < right; x += step) {
        context.moveTo(x, height);
        context.lineTo(x + height, 0);
      }
      context.stroke();
      context.restore();
    }
  }
}
