import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  ApiError,
  businessFromToken,
  createApi,
  downloadUrl,
  fetchPeaks,
  parseRetryAfter,
  tokenFromHash,
} from '../api.js';
import { peaksFile } from './peaks-fixtures.js';

const BASE = 'https://player.example/';

function fakeFetch(responses) {
  const requests = [];
  const fetchImpl = async (url, init) => {
    requests.push({ url, ...init });
    const next = responses.shift();
    if (next instanceof Error) throw next;
    const { status = 200, body = null, headers = {} } = next;
    return new Response(body == null ? null : JSON.stringify(body), { status, headers });
  };
  return { fetchImpl, requests };
}

describe('tokenFromHash', () => {
  it('reads the token from the fragment', () => {
    assert.equal(tokenFromHash('#token=abc.def.ghi'), 'abc.def.ghi');
    assert.equal(tokenFromHash('#view=list&token=xyz'), 'xyz');
  });

  it('is null without a usable token', () => {
    for (const hash of ['', '#', '#token=', '#token=%20', '#other=1', null, undefined]) {
      assert.equal(tokenFromHash(hash), null);
    }
  });
});

describe('businessFromToken', () => {
  it('reads sub from the payload without verifying', () => {
    const payload = Buffer.from(JSON.stringify({ sub: 'acme-01', exp: 1 })).toString('base64url');
    assert.equal(businessFromToken(`e30.${payload}.sig`), 'acme-01');
  });

  it('is null for anything else', () => {
    assert.equal(businessFromToken('not-a-jwt'), null);
    assert.equal(businessFromToken(`e30.${Buffer.from('{}').toString('base64url')}.x`), null);
  });
});

describe('parseRetryAfter', () => {
  it('reads delay-seconds', () => {
    assert.equal(parseRetryAfter('3'), 3);
    assert.equal(parseRetryAfter(' 0 '), 0);
  });

  it('reads an HTTP date relative to now', () => {
    const now = Date.parse('Tue, 01 Jul 2025 10:00:00 GMT');
    assert.equal(parseRetryAfter('Tue, 01 Jul 2025 10:00:05 GMT', now), 5);
    assert.equal(parseRetryAfter('Tue, 01 Jul 2025 09:00:00 GMT', now), 0);
  });

  it('is null when absent or unreadable', () => {
    assert.equal(parseRetryAfter(null), null);
    assert.equal(parseRetryAfter('soon'), null);
    assert.equal(parseRetryAfter('-3'), null);
  });
});

describe('downloadUrl', () => {
  it('adds download=1 and keeps the signed token', () => {
    assert.equal(
      downloadUrl('/api/recordings/CA1/stream?token=t.o.k', BASE),
      '/api/recordings/CA1/stream?token=t.o.k&download=1',
    );
  });

  it('works for a URL without a query and for another origin', () => {
    assert.equal(downloadUrl('/media/CA1', BASE), '/media/CA1?download=1');
    assert.equal(downloadUrl('https://cdn.example/a?token=x', BASE), 'https://cdn.example/a?token=x&download=1');
  });
});

describe('createApi', () => {
  it('sends the token only in the Authorization header', async () => {
    const { fetchImpl, requests } = fakeFetch([{ body: { items: [], next_cursor: null } }]);
    const api = createApi({ token: 'secret.tok.en', base: BASE, fetchImpl });
    await api.listRecordings();
    assert.equal(requests.length, 1);
    assert.equal(requests[0].url, 'https://player.example/api/recordings?limit=50');
    assert.equal(requests[0].headers.Authorization, 'Bearer secret.tok.en');
    assert.ok(!requests[0].url.includes('secret'));
    assert.equal(requests[0].method, 'GET');
  });

  it('pages with the cursor', async () => {
    const page = { items: [{ call_sid: 'CA2' }], next_cursor: 'c2' };
    const { fetchImpl, requests } = fakeFetch([{ body: page }]);
    const api = createApi({ token: 't', base: BASE, fetchImpl });
    const result = await api.listRecordings({ cursor: 'c1', limit: 10 });
    assert.equal(requests[0].url, 'https://player.example/api/recordings?limit=10&cursor=c1');
    assert.deepEqual(result, { items: [{ call_sid: 'CA2' }], nextCursor: 'c2' });
  });

  it('sends the filters as query parameters, after the cursor', async () => {
    const { fetchImpl, requests } = fakeFetch([{ body: { items: [], next_cursor: null } }]);
    const api = createApi({ token: 't', base: BASE, fetchImpl });
    const filters = { q: 'CA 12', status: 'ready', from: '2026-11-01', to: '2026-11-29' };
    await api.listRecordings({ cursor: 'c1', limit: 50, filters });
    assert.equal(
      requests[0].url,
      'https://player.example/api/recordings?limit=50&cursor=c1&q=CA+12&status=ready&from=2026-11-01&to=2026-11-29',
    );
  });

  it('leaves empty filters out', async () => {
    const { fetchImpl, requests } = fakeFetch([{ body: { items: [], next_cursor: null } }]);
    const api = createApi({ token: 't', base: BASE, fetchImpl });
    await api.listRecordings({ filters: { q: '', status: 'ready', from: '', to: '' } });
    assert.equal(requests[0].url, 'https://player.example/api/recordings?limit=50&status=ready');
  });

  it("reports a filter the server refuses with the server's message", async () => {
    const { fetchImpl } = fakeFetch([{ status: 400, body: { error: { code: 'bad_filter', message: 'from is not a date' } } }]);
    const api = createApi({ token: 't', base: BASE, fetchImpl });
    await assert.rejects(api.listRecordings({ filters: { from: '2026-01-01' } }), {
      httpStatus: 400,
      code: 'bad_filter',
      message: 'from is not a date',
    });
  });

  it('POSTs fetch and returns the status with Retry-After', async () => {
    const { fetchImpl, requests } = fakeFetch([
      { status: 202, body: { call_sid: 'CA1', status: 'queued' }, headers: { 'Retry-After': '2' } },
    ]);
    const api = createApi({ token: 't', base: BASE, fetchImpl });
    const answer = await api.requestMedia('CA1');
    assert.equal(requests[0].method, 'POST');
    assert.equal(requests[0].url, 'https://player.example/api/recordings/CA1/fetch');
    assert.deepEqual(answer, { status: { call_sid: 'CA1', status: 'queued' }, retryAfter: 2 });
  });

  it('GETs a status', async () => {
    const { fetchImpl, requests } = fakeFetch([{ body: { call_sid: 'CA_1-x', status: 'ready' } }]);
    const api = createApi({ token: 't', base: BASE, fetchImpl });
    const answer = await api.getStatus('CA_1-x');
    assert.equal(requests[0].url, 'https://player.example/api/recordings/CA_1-x');
    assert.deepEqual(answer, { status: { call_sid: 'CA_1-x', status: 'ready' }, retryAfter: null });
  });

  it('turns an error body into an ApiError', async () => {
    const { fetchImpl } = fakeFetch([{ status: 401, body: { error: { code: 'unauthorized', message: 'Token expired' } } }]);
    const api = createApi({ token: 't', base: BASE, fetchImpl });
    await assert.rejects(api.getStatus('CA1'), (error) => {
      assert.ok(error instanceof ApiError);
      assert.equal(error.httpStatus, 401);
      assert.equal(error.code, 'unauthorized');
      assert.equal(error.message, 'Token expired');
      assert.equal(error.isUnauthorized, true);
      return true;
    });
  });

  it('explains an error without a JSON body', async () => {
    const { fetchImpl } = fakeFetch([{ status: 502 }]);
    const api = createApi({ token: 't', base: BASE, fetchImpl });
    await assert.rejects(api.getStatus('CA1'), { httpStatus: 502, code: 'http_error', message: 'The server answered 502.' });
  });

  it('reports an unreachable server as a network error', async () => {
    const { fetchImpl } = fakeFetch([new TypeError('fetch failed')]);
    const api = createApi({ token: 't', base: BASE, fetchImpl });
    await assert.rejects(api.getStatus('CA1'), { httpStatus: 0, code: 'network_error' });
  });

  it('passes an abort through unchanged', async () => {
    const controller = new AbortController();
    const reason = new Error('switched recording');
    controller.abort(reason);
    const fetchImpl = async (_url, init) => {
      init.signal.throwIfAborted();
      return new Response('{}');
    };
    const api = createApi({ token: 't', base: BASE, fetchImpl });
    await assert.rejects(api.getStatus('CA1', { signal: controller.signal }), reason);
  });
});

describe('createApi().followStatus', () => {
  const sse = (...statuses) => statuses.map((status) => `data: {"call_sid":"CA 1","status":"${status}"}\n\n`).join('');

  it('reads the events of a recording with the token in the header', async () => {
    const requests = [];
    const fetchImpl = async (url, init) => {
      requests.push({ url, ...init });
      return new Response(sse('processing', 'ready'), { headers: { 'Content-Type': 'text/event-stream' } });
    };
    const api = createApi({ token: 'secret', base: BASE, fetchImpl });
    const seen = [];
    const result = await api.followStatus('CA 1', { onStatus: (s) => seen.push(s.status) });
    assert.equal(requests[0].url, 'https://player.example/api/recordings/CA%201/events');
    assert.equal(requests[0].headers.Authorization, 'Bearer secret');
    assert.ok(!requests[0].url.includes('secret'));
    assert.deepEqual(seen, ['processing', 'ready']);
    assert.equal(result.action, 'done');
    assert.equal(result.status.status, 'ready');
  });

  it('says to poll when the events cannot be read', async () => {
    const fetchImpl = async () => new Response('{}', { status: 404, headers: { 'Content-Type': 'application/json' } });
    const api = createApi({ token: 't', base: BASE, fetchImpl });
    assert.deepEqual(await api.followStatus('CA1'), { action: 'poll', reason: 'http_404', status: null });
  });

  it('rejects with an unauthorized ApiError for a refused token', async () => {
    const fetchImpl = async () => new Response('{}', { status: 401 });
    const api = createApi({ token: 't', base: BASE, fetchImpl });
    await assert.rejects(api.followStatus('CA1'), (error) => error instanceof ApiError && error.isUnauthorized);
  });
});

describe('fetchPeaks', () => {
  const file = peaksFile([[[-1, 1], [-2, 2]]]);

  it('fetches the peaks URL without the token header or cookies, and parses it', async () => {
    const requests = [];
    const fetchImpl = async (url, init) => {
      requests.push({ url, ...init });
      return new Response(file, { headers: { 'Content-Type': 'application/octet-stream', ETag: '"p1"' } });
    };
    const peaks = await fetchPeaks('/api/recordings/CA1/peaks?token=short.lived', { base: BASE, fetchImpl });
    assert.equal(requests[0].url, 'https://player.example/api/recordings/CA1/peaks?token=short.lived');
    assert.equal(requests[0].headers, undefined);
    assert.equal(requests[0].credentials, 'omit');
    assert.equal(peaks.channels, 2);
    assert.equal(peaks.length, 1);
  });

  it('rejects an error answer with its status', async () => {
    const fetchImpl = async () => new Response('gone', { status: 403 });
    await assert.rejects(fetchPeaks('/p', { base: BASE, fetchImpl }), { name: 'ApiError', httpStatus: 403 });
  });

  it('refuses a body announced larger than any peaks file without reading it', async () => {
    let cancelled = false;
    const body = new ReadableStream({
      cancel() {
        cancelled = true;
      },
    });
    const fetchImpl = async () => new Response(body, { headers: { 'Content-Length': '10000000' } });
    await assert.rejects(fetchPeaks('/p', { base: BASE, fetchImpl }), /too large: 10000000 bytes/);
    assert.equal(cancelled, true);
  });

  it('rejects a file the parser refuses', async () => {
    const fetchImpl = async () => new Response(new Uint8Array([1, 2, 3]));
    await assert.rejects(fetchPeaks('/p', { base: BASE, fetchImpl }), /truncated/);
  });
});
