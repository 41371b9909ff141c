import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { afterEvents, followEvents, isEventStream, statusFromEvent } from '../events.js';

const URL = 'https://player.example/api/recordings/CA1/events';
const SSE = { 'Content-Type': 'text/event-stream; charset=utf-8' };

const event = (status) => `data: ${JSON.stringify({ call_sid: 'CA1', status })}\n\n`;

/** A response whose body streams `chunks` (strings), then closes; `hang` leaves it open after them. */
function streaming(chunks, { status = 200, headers = SSE, hang = false } = {}) {
  const encoder = new TextEncoder();
  let cancelled = false;
  const body = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      if (!hang) controller.close();
    },
    cancel() {
      cancelled = true;
    },
  });
  const response = new Response(body, { status, headers });
  return { response, wasCancelled: () => cancelled };
}

function fetchAnswering(answer) {
  const requests = [];
  const fetchImpl = async (url, init) => {
    requests.push({ url, ...init });
    if (answer instanceof Error) throw answer;
    init.signal?.throwIfAborted();
    return answer;
  };
  return { fetchImpl, requests };
}

describe('statusFromEvent', () => {
  it('reads a status object from a message or status event', () => {
    assert.deepEqual(statusFromEvent({ type: 'message', data: '{"status":"queued"}' }), { status: 'queued' });
    assert.deepEqual(statusFromEvent({ type: 'status', data: '{"status":"ready"}' }), { status: 'ready' });
  });

  it('ignores other events and data that is not a status object', () => {
    assert.equal(statusFromEvent({ type: 'ping', data: '{"status":"ready"}' }), null);
    for (const data of ['', 'not json', '[]', 'null', '{"state":"ready"}', '{"status":3}']) {
      assert.equal(statusFromEvent({ type: 'message', data }), null, data);
    }
  });
});

describe('isEventStream', () => {
  it('needs 200 and text/event-stream', () => {
    assert.equal(isEventStream(200, 'text/event-stream'), true);
    assert.equal(isEventStream(200, 'Text/Event-Stream; charset=utf-8'), true);
    assert.equal(isEventStream(200, 'application/json'), false);
    assert.equal(isEventStream(200, 'text/event-streamer'), false);
    assert.equal(isEventStream(200, null), false);
    assert.equal(isEventStream(204, 'text/event-stream'), false);
  });
});

describe('afterEvents (the fallback decision)', () => {
  it('is done once a final status arrived, whatever happened after', () => {
    assert.deepEqual(afterEvents({ httpStatus: 200, contentType: 'text/event-stream', lastStatus: { status: 'ready' } }), {
      action: 'done',
      reason: 'ready',
    });
    const failed = afterEvents({ error: new TypeError('reset'), lastStatus: { status: 'failed' } });
    assert.deepEqual(failed, { action: 'done', reason: 'failed' });
  });

  it('reports a refused token rather than polling', () => {
    assert.deepEqual(afterEvents({ httpStatus: 401 }), { action: 'unauthorized', reason: 'http_401' });
  });

  it('falls back to polling for an error answer', () => {
    for (const httpStatus of [404, 405, 429, 500, 502, 503, 204]) {
      assert.deepEqual(afterEvents({ httpStatus }), { action: 'poll', reason: `http_${httpStatus}` });
    }
  });

  it('falls back to polling when the answer is not an event stream', () => {
    assert.deepEqual(afterEvents({ httpStatus: 200, contentType: 'application/json' }), {
      action: 'poll',
      reason: 'not_event_stream',
    });
  });

  it('falls back to polling on a network error or a stall', () => {
    assert.deepEqual(afterEvents({ error: new TypeError('fetch failed') }), { action: 'poll', reason: 'network_error' });
    const stall = Object.assign(new Error('quiet'), { name: 'TimeoutError' });
    const stalled = afterEvents({ httpStatus: 200, contentType: 'text/event-stream', error: stall });
    assert.deepEqual(stalled, { action: 'poll', reason: 'stalled' });
  });

  it('falls back to polling when the stream closed before a final status', () => {
    const closed = afterEvents({ httpStatus: 200, contentType: 'text/event-stream', lastStatus: { status: 'processing' } });
    assert.deepEqual(closed, { action: 'poll', reason: 'closed_early' });
    assert.deepEqual(afterEvents(), { action: 'poll', reason: 'closed_early' });
  });
});

describe('followEvents', () => {
  it('sends the token in the Authorization header and reports each status as it comes', async () => {
    const split = 'data: {"call_sid":"CA1","status":"processing"}\n\n';
    const { response } = streaming([event('queued'), ': keep-alive\n\n', split.slice(0, 20), split.slice(20)]);
    const { fetchImpl, requests } = fetchAnswering(response);
    const seen = [];
    const result = await followEvents({ url: URL, token: 'tok.en', fetchImpl, onStatus: (s) => seen.push(s.status) });
    assert.equal(requests.length, 1);
    assert.equal(requests[0].url, URL);
    assert.equal(requests[0].method, 'GET');
    assert.equal(requests[0].headers.Authorization, 'Bearer tok.en');
    assert.equal(requests[0].headers.Accept, 'text/event-stream');
    assert.equal(requests[0].credentials, 'omit');
    assert.deepEqual(seen, ['queued', 'processing']);
    // the stream ended without a final status: the caller polls from here
    assert.deepEqual(result, { action: 'poll', reason: 'closed_early', status: { call_sid: 'CA1', status: 'processing' } });
  });

  it('stops reading at a final status, even with the stream still open', async () => {
    const text = event('queued') + event('processing') + event('ready');
    const { response, wasCancelled } = streaming([text.slice(0, 17), text.slice(17, 70), text.slice(70)], { hang: true });
    const seen = [];
    const result = await followEvents({ url: URL, token: 't', ...fetchAnswering(response), onStatus: (s) => seen.push(s.status) });
    assert.deepEqual(seen, ['queued', 'processing', 'ready']);
    assert.equal(result.action, 'done');
    assert.equal(result.status.status, 'ready');
    assert.equal(wasCancelled(), true);
  });

  it('is done at failed', async () => {
    const { response } = streaming([event('queued'), event('failed')]);
    const result = await followEvents({ url: URL, token: 't', ...fetchAnswering(response) });
    assert.deepEqual([result.action, result.reason], ['done', 'failed']);
  });

  it('falls back when the server answers an error, without reading the body', async () => {
    const { response, wasCancelled } = streaming(['{"error":{}}'], { status: 503, headers: { 'Content-Type': 'application/json' }, hang: true });
    const result = await followEvents({ url: URL, token: 't', ...fetchAnswering(response) });
    assert.deepEqual(result, { action: 'poll', reason: 'http_503', status: null });
    assert.equal(wasCancelled(), true);
  });

  it('falls back when the answer is not an event stream', async () => {
    const { response } = streaming(['{"status":"ready"}'], { headers: { 'Content-Type': 'application/json' } });
    const result = await followEvents({ url: URL, token: 't', ...fetchAnswering(response) });
    assert.deepEqual(result, { action: 'poll', reason: 'not_event_stream', status: null });
  });

  it('reports a refused token', async () => {
    const { response } = streaming([], { status: 401, headers: {} });
    const result = await followEvents({ url: URL, token: 't', ...fetchAnswering(response) });
    assert.equal(result.action, 'unauthorized');
  });

  it('falls back on a network error', async () => {
    const result = await followEvents({ url: URL, token: 't', ...fetchAnswering(new TypeError('fetch failed')) });
    assert.deepEqual(result, { action: 'poll', reason: 'network_error', status: null });
  });

  it('falls back when the stream breaks mid-way, keeping the last status', async () => {
    let step = 0;
    const body = new ReadableStream({
      pull(controller) {
        step += 1;
        if (step === 1) controller.enqueue(new TextEncoder().encode(event('processing')));
        else controller.error(new TypeError('network error'));
      },
    });
    const response = new Response(body, { headers: SSE });
    const result = await followEvents({ url: URL, token: 't', ...fetchAnswering(response) });
    assert.deepEqual([result.action, result.reason, result.status.status], ['poll', 'network_error', 'processing']);
  });

  it('gives up on a stream that stays silent for too long', async () => {
    const { response, wasCancelled } = streaming([event('queued')], { hang: true });
    const started = performance.now();
    const result = await followEvents({ url: URL, token: 't', ...fetchAnswering(response), idleMs: 40 });
    assert.deepEqual([result.action, result.reason, result.status.status], ['poll', 'stalled', 'queued']);
    assert.ok(performance.now() - started < 2000);
    assert.equal(wasCancelled(), true);
  });

  it('rejects with the reason when the caller aborts', async () => {
    const { response } = streaming([event('queued')], { hang: true });
    const controller = new AbortController();
    const reason = new Error('switched recording');
    const following = followEvents({
      url: URL,
      token: 't',
      ...fetchAnswering(response),
      signal: controller.signal,
      onStatus: () => controller.abort(reason),
    });
    await assert.rejects(following, reason);
  });

  it('sends nothing when already aborted', async () => {
    const { fetchImpl, requests } = fetchAnswering(streaming([]).response);
    await assert.rejects(followEvents({ url: URL, token: 't', fetchImpl, signal: AbortSignal.abort(new Error('gone')) }), /gone/);
    assert.equal(requests.length, 0);
  });
});
