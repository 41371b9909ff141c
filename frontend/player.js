/**
 * The player dock: one `<audio>` element for the whole page (so one recording plays at a time), its
 * transport, seek bar with buffered ranges, clock, speed, mute, download link and keyboard; the waveform
 * (waveform.js) once the recording's peaks are fetched, and skip silence, which jumps over the silences found
 * in them.
 *
 * The audio element streams the signed `stream_url` itself, with Range requests as it needs them: the page
 * never reads the media into memory and never makes a Blob URL.
 */

import { downloadUrl } from './api.js';
import { keyAction, keyBelongsToControl } from './keys.js';
import { RATES, formatRate, loadRate, loadSkipSilence, saveRate, saveSkipSilence, stepRate } from './prefs.js';
import { findSilences, skipTarget, skippableSeconds } from './silence.js';
import { bufferedSegments, clampTime, formatTime, knownDuration, spokenDuration } from './time.js';
import { Waveform } from './waveform.js';

/** A download link older than this is re-signed before it is followed (stream tokens are short-lived). */
const DOWNLOAD_LINK_FRESH_MS = 10 * 60 * 1000;

/** How long a passing message ("Skipped 4 s of silence") stays. */
const FLASH_MS = 2500;

export class Player {
  /**
   * @param {HTMLElement} root the dock (`#player`)
   * @param {object} hooks
   * @param {(sid: string, state: 'playing'|'paused') => void} hooks.onState the audio started or stopped
   * @param {(sid: string, error: MediaError|null) => void} hooks.onMediaError the audio could not be played
   * @param {(sid: string) => Promise<string|null>} hooks.freshStreamUrl a newly signed stream URL
   * @param {Storage|null} [hooks.storage] where the speed and skip silence are remembered
   */
  constructor(root, { onState, onMediaError, freshStreamUrl, storage = null }) {
    this.root = root;
    this.hooks = { onState, onMediaError, freshStreamUrl };
    this.storage = storage;
    this.sid = null; // the recording shown in the dock
    this.loadedSid = null; // the recording whose media the audio element holds: events are about it
    this.catalogDuration = null;
    this.linkSignedAt = 0;
    this.scrubbing = false; // the seek bar is held
    this.scrubPreview = null; // seconds under a pointer dragging on the waveform
    this.peaksSid = null; // the recording the waveform shows
    this.silences = [];
    this.flashTimer = 0;
    this.flashText = null;

    const $ = (selector) => root.querySelector(selector);
    this.audio = $('audio');
    this.title = $('.player-title');
    this.message = $('.player-message');
    this.toggleButton = $('[data-player="toggle"]');
    this.backButton = $('[data-player="back"]');
    this.forwardButton = $('[data-player="forward"]');
    this.muteButton = $('[data-player="mute"]');
    this.seek = $('.seek-input');
    this.seekBar = $('.seek');
    this.bufferedLayer = $('.seek-buffered');
    this.elapsed = $('.time-elapsed');
    this.total = $('.time-total');
    this.rateSelect = $('.rate');
    this.download = $('.player-download');
    this.skipButton = $('[data-player="skip-silence"]');
    this.waveform = new Waveform($('.wave'), {
      timeline: () => this.waveTimeline(),
      onSeek: (seconds) => this.seekTo(seconds),
      onScrub: (seconds) => this.previewScrub(seconds),
    });

    this.rate = loadRate(storage);
    this.skipSilence = loadSkipSilence(storage);
    for (const rate of RATES) {
      const option = document.createElement('option');
      option.value = String(rate);
      option.textContent = formatRate(rate);
      this.rateSelect.append(option);
    }
    this.rateSelect.value = String(this.rate);
    this.listen();
    this.setControlsEnabled(false);
    this.renderSkipSilence();
    this.render();
  }

  listen() {
    const { audio } = this;
    audio.addEventListener('playing', () => {
      this.setMessage(this.flashText ?? ''); // a passing message ("Skipped 4 s of silence") stays its time
      if (this.loadedSid) this.hooks.onState(this.loadedSid, 'playing');
      this.render();
    });
    audio.addEventListener('pause', () => {
      if (this.loadedSid) this.hooks.onState(this.loadedSid, 'paused');
      this.render();
    });
    audio.addEventListener('ended', () => this.setMessage('Finished'));
    audio.addEventListener('waiting', () => this.loadedSid && this.setMessage('Buffering…'));
    audio.addEventListener('error', () => {
      if (this.loadedSid && audio.getAttribute('src')) this.hooks.onMediaError(this.loadedSid, audio.error);
    });
    for (const type of ['timeupdate', 'durationchange', 'loadedmetadata', 'progress', 'seeking', 'seeked', 'emptied']) {
      audio.addEventListener(type, () => this.renderTimeline());
    }
    audio.addEventListener('timeupdate', () => this.skipSilenceNow());
    audio.addEventListener('volumechange', () => this.renderMute());
    audio.addEventListener('ratechange', () => {
      this.rateSelect.value = String(audio.playbackRate);
    });

    this.toggleButton.addEventListener('click', () => this.toggle());
    this.backButton.addEventListener('click', () => this.seekBy(-10));
    this.forwardButton.addEventListener('click', () => this.seekBy(10));
    this.muteButton.addEventListener('click', () => this.toggleMute());
    this.skipButton.addEventListener('click', () => this.toggleSkipSilence());
    this.rateSelect.addEventListener('change', () => this.setRate(Number(this.rateSelect.value)));

    this.seek.addEventListener('pointerdown', () => {
      this.scrubbing = true;
    });
    this.seek.addEventListener('input', () => {
      this.seekTo(Number(this.seek.value));
    });
    this.seek.addEventListener('change', () => {
      this.scrubbing = false;
      this.seekTo(Number(this.seek.value));
    });

    this.download.addEventListener('click', (event) => this.onDownloadClick(event));
    this.root.addEventListener('keydown', (event) => this.onKeydown(event));
  }

  /** Show the dock for a recording that is being prepared; the controls wait for {@link load}. */
  prepare(sid, status) {
    this.stop();
    this.sid = sid;
    this.catalogDuration = status?.duration_seconds ?? null;
    this.title.textContent = sid;
    this.root.hidden = false;
    document.body.classList.add('has-player');
    this.setMessage('Preparing…');
    this.render();
  }

  /**
   * Point the audio element at a signed stream URL.
   *
   * @param {{sid: string, streamUrl: string, durationSeconds?: number|null, resumeAt?: number}} recording
   */
  load({ sid, streamUrl, durationSeconds = null, resumeAt = 0 }) {
    const { audio } = this;
    if (sid !== this.peaksSid) this.clearPeaks(); // a reload of the same recording keeps its waveform
    this.sid = sid;
    this.loadedSid = sid;
    this.catalogDuration = durationSeconds;
    this.title.textContent = sid;
    this.root.hidden = false;
    document.body.classList.add('has-player');
    audio.defaultPlaybackRate = this.rate;
    audio.src = streamUrl;
    audio.playbackRate = this.rate;
    if (resumeAt > 0) {
      audio.addEventListener('loadedmetadata', () => {
        audio.currentTime = resumeAt;
      }, { once: true });
    }
    this.download.href = downloadUrl(streamUrl, document.baseURI);
    this.linkSignedAt = Date.now();
    this.setControlsEnabled(true);
    this.setMessage('Loading…');
    this.render();
  }

  /** Start playing; a browser that refuses autoplay leaves the recording paused, ready for a click. */
  async play() {
    if (!this.loadedSid) return;
    try {
      await this.audio.play();
    } catch (error) {
      if (error?.name === 'NotAllowedError') {
        this.setMessage('Ready: press play to listen');
        if (this.loadedSid) this.hooks.onState(this.loadedSid, 'paused');
      }
      // AbortError: another load or a pause came first, which is what the user asked for
    }
  }

  pause() {
    this.audio.pause();
  }

  toggle() {
    if (this.audio.paused) this.play();
    else this.pause();
  }

  /** Forget the current recording: stop the audio and its network requests. */
  stop() {
    const { audio } = this;
    this.sid = null;
    this.loadedSid = null;
    audio.pause();
    if (audio.getAttribute('src')) {
      audio.removeAttribute('src');
      audio.load();
    }
    this.download.removeAttribute('href');
    this.clearPeaks();
    this.setControlsEnabled(false);
    this.setMessage('');
    this.render();
  }

  /** Hide the dock (nothing is selected any more). */
  close() {
    this.stop();
    this.title.textContent = '';
    this.root.hidden = true;
    document.body.classList.remove('has-player');
  }

  get duration() {
    return knownDuration(this.audio.duration, this.catalogDuration);
  }

  seekTo(seconds) {
    if (!this.loadedSid) return;
    this.audio.currentTime = clampTime(seconds, this.duration);
    this.renderTimeline();
  }

  seekBy(seconds) {
    this.seekTo(this.audio.currentTime + seconds);
  }

  seekToFraction(fraction) {
    const { duration } = this;
    if (duration != null) this.seekTo(duration * fraction);
  }

  toggleMute() {
    this.audio.muted = !this.audio.muted;
  }

  // ---- waveform and skip silence ------------------------------------------------------------------------

  /**
   * Show the loaded recording's peaks (ignored when another recording is loaded by now).
   *
   * @param {string} sid
   * @param {ReturnType<import('./peaks.js').parsePeaks>} peaks
   * @param {string[]|null} channels the status object's lane labels
   * @returns {boolean} true when shown
   */
  setPeaks(sid, peaks, channels) {
    if (!sid || sid !== this.loadedSid) return false;
    this.peaksSid = sid;
    this.silences = findSilences(peaks);
    this.root.dataset.waveform = 'true';
    document.body.classList.add('has-waveform');
    this.waveform.setPeaks(peaks, channels);
    this.waveform.setSilences(this.silences, this.skipSilence);
    this.renderSkipSilence();
    return true;
  }

  /** True when the waveform shows this recording. */
  hasPeaksFor(sid) {
    return Boolean(sid) && this.peaksSid === sid;
  }

  clearPeaks() {
    this.peaksSid = null;
    this.silences = [];
    this.scrubPreview = null;
    this.waveform.clear();
    this.root.dataset.waveform = 'false';
    document.body.classList.remove('has-waveform');
    this.renderSkipSilence();
  }

  toggleSkipSilence() {
    this.skipSilence = !this.skipSilence;
    saveSkipSilence(this.storage, this.skipSilence);
    this.renderSkipSilence();
    this.waveform.setSilences(this.silences, this.skipSilence);
    if (this.loadedSid) this.flash(this.skipSilence ? 'Skipping silences' : 'Playing silences');
    if (this.skipSilence) this.skipSilenceNow();
  }

  /** While playing with skip silence on, jump from inside a long silence to just before the sound resumes. */
  skipSilenceNow() {
    const { audio } = this;
    if (!this.skipSilence || !this.silences.length || this.peaksSid !== this.loadedSid) return;
    if (audio.paused || audio.seeking || this.scrubbing || this.scrubPreview !== null) return;
    const target = skipTarget(this.silences, audio.currentTime);
    if (target === null) return;
    const skipped = target - audio.currentTime;
    audio.currentTime = clampTime(target, this.duration);
    this.flash(`Skipped ${Math.round(skipped)} s of silence`);
  }

  /** A drag on the waveform: show the time under the pointer, seek when it is released. */
  previewScrub(seconds) {
    this.scrubPreview = seconds;
    this.renderTimeline();
  }

  waveTimeline() {
    const { audio, duration } = this;
    const hasMedia = Boolean(this.loadedSid);
    const segments = hasMedia && duration ? bufferedSegments(audio.buffered, duration) : [];
    return {
      currentTime: hasMedia ? audio.currentTime : 0,
      duration,
      buffered: segments.map(({ start, end }) => ({ start: (start / 100) * duration, end: (end / 100) * duration })),
      playing: hasMedia && !audio.paused,
    };
  }

  renderSkipSilence() {
    const on = this.skipSilence;
    this.skipButton.setAttribute('aria-pressed', String(on));
    const saved = this.peaksSid ? skippableSeconds(this.silences) : 0;
    const saving = saved >= 1 ? `; in this recording, ${spokenDuration(saved)}` : '';
    this.skipButton.title = `${on ? 'Skip silence is on' : 'Skip silence'}: jumps over silences longer than 2 s${saving} (S)`;
    this.root.dataset.skipSilence = String(on);
  }

  /** A message that goes away by itself, unless something else was said meanwhile. */
  flash(text) {
    this.setMessage(text);
    this.flashText = text;
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => {
      this.flashText = null;
      if (this.message.textContent === text) this.setMessage('');
    }, FLASH_MS);
  }

  setRate(rate) {
    if (!RATES.includes(rate)) return;
    this.rate = rate;
    this.audio.defaultPlaybackRate = rate;
    this.audio.playbackRate = rate;
    this.rateSelect.value = String(rate);
    saveRate(this.storage, rate);
  }

  /** Keys work while focus is anywhere in the dock, except in controls that need them (the speed menu). */
  onKeydown(event) {
    if (keyBelongsToControl(event.target)) return;
    const action = keyAction(event);
    if (!action || !this.loadedSid) return;
    event.preventDefault(); // also keeps Space from clicking the focused button a second time
    switch (action.type) {
      case 'toggle':
        this.toggle();
        break;
      case 'seekBy':
        this.seekBy(action.seconds);
        break;
      case 'seekToFraction':
        this.seekToFraction(action.fraction);
        break;
      case 'mute':
        this.toggleMute();
        break;
      case 'skipSilence':
        this.toggleSkipSilence();
        break;
      case 'rateStep':
        this.setRate(stepRate(this.rate, action.step));
        break;
      default:
        break;
    }
  }

  async onDownloadClick(event) {
    if (!this.loadedSid || Date.now() - this.linkSignedAt < DOWNLOAD_LINK_FRESH_MS) return;
    event.preventDefault();
    const streamUrl = await this.hooks.freshStreamUrl(this.loadedSid);
    if (!streamUrl) return;
    this.download.href = downloadUrl(streamUrl, document.baseURI);
    this.linkSignedAt = Date.now();
    window.location.assign(this.download.href);
  }

  setControlsEnabled(enabled) {
    for (const control of [this.toggleButton, this.backButton, this.forwardButton, this.seek]) {
      control.disabled = !enabled;
    }
    this.download.setAttribute('aria-disabled', String(!enabled));
    if (!enabled) this.download.tabIndex = -1;
    else this.download.removeAttribute('tabindex');
  }

  setMessage(text) {
    if (this.message.textContent !== text) this.message.textContent = text;
  }

  render() {
    const playing = !this.audio.paused;
    this.toggleButton.dataset.playing = String(playing);
    this.toggleButton.setAttribute('aria-label', playing ? 'Pause' : 'Play');
    this.root.dataset.playing = String(playing);
    this.renderMute();
    this.renderTimeline();
  }

  renderMute() {
    const { muted } = this.audio;
    this.muteButton.setAttribute('aria-pressed', String(muted));
    this.muteButton.dataset.muted = String(muted);
  }

  renderTimeline() {
    const { audio, duration } = this;
    const hasMedia = Boolean(this.loadedSid);
    const now = hasMedia ? (this.scrubPreview ?? audio.currentTime) : 0;
    this.elapsed.textContent = formatTime(now);
    this.total.textContent = formatTime(duration);
    this.seek.max = String(duration ?? 0);
    if (!this.scrubbing) this.seek.value = String(clampTime(now, duration));
    this.seek.setAttribute('aria-valuetext', `${formatTime(now)} of ${formatTime(duration, 'unknown length')}`);
    const played = duration ? Math.min(100, (now / duration) * 100) : 0;
    this.seekBar.style.setProperty('--played', `${played}%`);

    const segments = hasMedia ? bufferedSegments(audio.buffered, duration) : [];
    const layer = this.bufferedLayer;
    while (layer.children.length > segments.length) layer.lastChild.remove();
    while (layer.children.length < segments.length) layer.append(document.createElement('span'));
    segments.forEach(({ start, end }, i) => {
      const span = layer.children[i];
      span.style.left = `${start}%`;
      span.style.width = `${end - start}%`;
    });
    this.waveform.invalidate();
  }
}
