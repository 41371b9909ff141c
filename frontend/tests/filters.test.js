import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { tokenFromHash } from '../api.js';
import {
  NO_FILTERS,
  filterParams,
  filterProblem,
  filtersFromHash,
  hasFilters,
  hashWithFilters,
  isIsoDate,
  normalizeFilters,
  sameFilters,
} from '../filters.js';

describe('isIsoDate', () => {
  it('accepts real days written YYYY-MM-DD', () => {
    for (const text of ['2026-11-01', '2024-02-29', '1999-12-31']) assert.equal(isIsoDate(text), true, text);
  });

  it('refuses other forms and days that do not exist', () => {
    for (const text of ['2026-11-1', '01/11/2026', '2026-13-01', '2025-02-29', '2026-11-31', '2026-11-01T00:00', '', null]) {
      assert.equal(isIsoDate(text), false, String(text));
    }
  });
});

describe('normalizeFilters', () => {
  it('keeps usable values, trimming the prefix', () => {
    assert.deepEqual(normalizeFilters({ q: '  CA12 ', status: 'ready', from: '2026-11-01', to: '2026-11-29' }), {
      q: 'CA12',
      status: 'ready',
      from: '2026-11-01',
      to: '2026-11-29',
    });
  });

  it('drops an unknown status and unreadable dates', () => {
    assert.deepEqual(normalizeFilters({ q: 3, status: 'done', from: 'yesterday', to: '2026-02-30' }), NO_FILTERS);
    assert.deepEqual(normalizeFilters(null), NO_FILTERS);
  });

  it('cuts a very long prefix', () => {
    assert.equal(normalizeFilters({ q: 'C'.repeat(500) }).q.length, 64);
  });
});

describe('hasFilters and sameFilters', () => {
  it('tells whether any filter is set', () => {
    assert.equal(hasFilters(NO_FILTERS), false);
    assert.equal(hasFilters({ status: 'failed' }), true);
    assert.equal(hasFilters(null), false);
  });

  it('compares what the filters select', () => {
    assert.equal(sameFilters({ q: 'CA1 ' }, { q: 'CA1', status: '' }), true);
    assert.equal(sameFilters({ q: 'CA1' }, { q: 'CA2' }), false);
    assert.equal(sameFilters(NO_FILTERS, { status: 'nonsense' }), true);
  });
});

describe('filterProblem', () => {
  it('refuses a range that ends before it starts', () => {
    assert.deepEqual(filterProblem({ from: '2026-11-29', to: '2026-11-01' }), {
      field: 'to',
      message: 'The "to" date is before the "from" date.',
    });
  });

  it('accepts a one-day range, an open range and no range', () => {
    assert.equal(filterProblem({ from: '2026-11-01', to: '2026-11-01' }), null);
    assert.equal(filterProblem({ from: '2026-11-01', to: '' }), null);
    assert.equal(filterProblem({ from: '', to: '' }), null);
  });
});

describe('the filters in the URL fragment', () => {
  const token = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2lnbmF0dXJl-_x';

  it('reads them beside the token', () => {
    const hash = `#token=${token}&q=CA12&status=ready&from=2026-11-01&to=2026-11-29`;
    assert.deepEqual(filtersFromHash(hash), { q: 'CA12', status: 'ready', from: '2026-11-01', to: '2026-11-29' });
    assert.equal(tokenFromHash(hash), token);
  });

  it('reads none from a fragment with the token only, or nothing', () => {
    assert.deepEqual(filtersFromHash(`#token=${token}`), NO_FILTERS);
    assert.deepEqual(filtersFromHash(''), NO_FILTERS);
    assert.deepEqual(filtersFromHash(undefined), NO_FILTERS);
  });

  it('ignores values the list cannot use', () => {
    assert.deepEqual(filtersFromHash('#token=t&status=weird&from=2026-99-01'), NO_FILTERS);
  });

  it('writes them after the token, keeping the token as it was', () => {
    const hash = hashWithFilters(`#token=${token}`, { q: 'CA12', status: 'ready', from: '2026-11-01', to: '2026-11-29' });
    assert.equal(hash, `#token=${token}&q=CA12&status=ready&from=2026-11-01&to=2026-11-29`);
    assert.equal(tokenFromHash(hash), token);
  });

  it('replaces filters already there and leaves empty ones out', () => {
    const hash = hashWithFilters(`#token=t&status=failed&q=CA1&view=x`, { q: 'CA2', status: '' });
    assert.equal(hash, '#token=t&view=x&q=CA2');
    assert.equal(hashWithFilters('#token=t&q=CA1', NO_FILTERS), '#token=t');
  });

  it('encodes what needs encoding and reads it back', () => {
    const filters = { q: 'CA 1&2=#', status: '', from: '', to: '' };
    const hash = hashWithFilters('#token=t', filters);
    assert.ok(!hash.slice(1).includes('#'));
    assert.deepEqual(filtersFromHash(hash), filters);
    assert.equal(tokenFromHash(hash), 't');
  });
});

describe('filterParams', () => {
  it('lists the set filters in a fixed order', () => {
    assert.deepEqual(filterParams({ to: '2026-11-29', q: 'CA12', status: 'queued' }), [
      ['q', 'CA12'],
      ['status', 'queued'],
      ['to', '2026-11-29'],
    ]);
  });

  it('is empty without filters', () => {
    assert.deepEqual(filterParams(null), []);
    assert.deepEqual(filterParams(NO_FILTERS), []);
  });
});
