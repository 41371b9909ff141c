import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { SSE_START, parseSse, sseFeed } from '../sse.js';

const message = (data, extra = {}) => ({ type: 'message', data, lastEventId: '', ...extra });

describe('sseFeed', () => {
  it('dispatches an event at a blank line', () => {
    assert.deepEqual(parseSse(['data: {"status":"queued"}\n\n']), [message('{"status":"queued"}')]);
  });

  it('reads several events from one chunk', () => {
    assert.deepEqual(parseSse(['data: a\n\ndata: b\n\n']), [message('a'), message('b')]);
  });

  it('joins an event split across chunks anywhere, even inside the field name', () => {
    const text = 'data: {"status":"processing"}\n\ndata: {"status":"ready"}\n\n';
    const expected = [message('{"status":"processing"}'), message('{"status":"ready"}')];
    for (let cut = 1; cut < text.length; cut += 1) {
      assert.deepEqual(parseSse([text.slice(0, cut), text.slice(cut)]), expected, `cut at ${cut}`);
    }
    assert.deepEqual(parseSse([...text]), expected, 'one character at a time');
  });

  it('keeps the state pure: feeding the same state twice gives the same answer', () => {
    const { state } = sseFeed(SSE_START, 'data: half');
    assert.deepEqual(sseFeed(state, '\n\n').events, [message('half')]);
    assert.deepEqual(sseFeed(state, ' more\n\n').events, [message('half more')]);
    assert.deepEqual(SSE_START.buffer, '');
  });

  it('ignores comments, such as keep-alives', () => {
    assert.deepEqual(parseSse([': keep-alive\n\n', ':\n', 'data: x\n', ': in the middle\n', '\n']), [message('x')]);
  });

  it('joins multi-line data with newlines', () => {
    assert.deepEqual(parseSse(['data: {"status":\ndata: "ready"}\n\n']), [message('{"status":\n"ready"}')]);
    assert.deepEqual(parseSse(['data\ndata\n\n']), [message('\n')]);
  });

  it('removes one space after the colon only', () => {
    assert.deepEqual(parseSse(['data:x\n\n', 'data:  y\n\n']), [message('x'), message(' y')]);
  });

  it('accepts CRLF and CR line ends, also when CRLF is split across chunks', () => {
    assert.deepEqual(parseSse(['data: a\r\n\r\ndata: b\r\rdata: c\n\n']), [message('a'), message('b'), message('c')]);
    assert.deepEqual(parseSse(['data: a\r', '\n\r', '\ndata: b\r', '\r']), [message('a'), message('b')]);
    assert.deepEqual(parseSse(['data: a\r', '', '\n', '\r\n']), [message('a')]);
  });

  it('reads the event name and the last event id', () => {
    assert.deepEqual(parseSse(['event: status\nid: 7\ndata: x\n\ndata: y\n\n']), [
      { type: 'status', data: 'x', lastEventId: '7' },
      { type: 'message', data: 'y', lastEventId: '7' },
    ]);
  });

  it('does not dispatch an event without data', () => {
    assert.deepEqual(parseSse(['event: ping\n\nretry: 1000\n\nid: 3\n\n']), []);
  });

  it('drops an unfinished event at the end of the stream', () => {
    assert.deepEqual(parseSse(['data: a\n\ndata: b\n']), [message('a')]);
  });

  it('skips a byte order mark at the start only', () => {
    assert.deepEqual(parseSse(['\uFEFFdata: a\n\n']), [message('a')]);
    assert.deepEqual(parseSse(['', '\uFEFF', 'data: a\n\n']), [message('a')]);
    assert.deepEqual(parseSse(['data: a\n\n', '\uFEFFdata: b\n\n']), [message('a')]);
  });

  it('ignores unknown fields and an id with a NUL', () => {
    assert.deepEqual(parseSse(['foo: bar\nid: a\0b\ndata: x\n\n']), [message('x')]);
  });
});
