/**
 * A text/event-stream (Server-Sent Events) parser, as the HTML standard describes it. Pure: the state is a
 * plain object, each call returns a new one, so chunks can be fed as they arrive from a ReadableStream.
 *
 * Lines end with CRLF, LF or CR (a CR ending one chunk and an LF starting the next count once). Lines starting
 * with ":" are comments. "field: value" loses one space after the colon. `data` lines join with "\n". A blank
 * line dispatches the event; an event without data is not dispatched; an unfinished event at the end of the
 * stream is dropped.
 */

/** @typedef {{type: string, data: string, lastEventId: string}} SseEvent */

/** The state before the first chunk. */
export const SSE_START = Object.freeze({
  buffer: '', // the unfinished line
  data: null, // data lines of the event being read (null: none yet)
  type: '',
  lastEventId: '',
  afterCR: false, // the last chunk ended with CR: an LF starting the next chunk belongs to it
  started: false, // the byte order mark, if any, is behind us
});

/**
 * Feed one chunk of decoded text.
 *
 * @param {typeof SSE_START} state
 * @param {string} chunk
 * @returns {{state: typeof SSE_START, events: SseEvent[]}}
 */
export function sseFeed(state, chunk) {
  let text = state.buffer + String(chunk ?? '');
  let { started, afterCR } = state;
  if (!started && text.length) {
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    started = true;
  }
  if (afterCR && text.length && !state.buffer) {
    if (text[0] === '\n') text = text.slice(1);
    afterCR = false;
  }
  let { data, type, lastEventId } = state;
  const events = [];
  let position = 0;
  for (;;) {
    const cr = text.indexOf('\r', position);
    const lf = text.indexOf('\n', position);
    if (cr < 0 && lf < 0) break;
    const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
    const line = text.slice(position, end);
    if (text[end] === '\r') {
      if (end + 1 < text.length) {
        position = text[end + 1] === '\n' ? end + 2 : end + 1;
      } else {
        position = end + 1;
        afterCR = true;
      }
    } else {
      position = end + 1;
    }

    if (line === '') {
      if (data !== null) events.push({ type: type || 'message', data: data.join('\n'), lastEventId });
      data = null;
      type = '';
      continue;
    }
    if (line[0] === ':') continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') data = data === null ? [value] : [...data, value];
    else if (field === 'event') type = value;
    else if (field === 'id' && !value.includes('\0')) lastEventId = value;
    // `retry` and unknown fields are ignored: the player does its own reconnecting (it falls back to polling).
  }
  const rest = text.slice(position);
  if (rest) afterCR = false;
  return { state: { buffer: rest, data, type, lastEventId, afterCR, started }, events };
}

/**
 * Parse a whole stream at once (for tests and small bodies). The unfinished event at the end is dropped.
 *
 * @param {string[]} chunks
 * @returns {SseEvent[]}
 */
export function parseSse(chunks) {
  let state = SSE_START;
  const events = [];
  for (const chunk of chunks) {
    const result = sseFeed(state, chunk);
    state = result.state;
    events.push(...result.events);
  }
  return events;
}
