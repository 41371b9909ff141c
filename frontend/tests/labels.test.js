import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { failureReason, formatDate, statusLabel } from '../labels.js';

describe('statusLabel', () => {
  it('names each status', () => {
    assert.equal(statusLabel('new'), 'Not fetched');
    assert.equal(statusLabel('queued'), 'Queued');
    assert.equal(statusLabel('processing'), 'Fetching');
    assert.equal(statusLabel('ready'), 'Ready');
    assert.equal(statusLabel('failed'), 'Failed');
    assert.equal(statusLabel('weird'), 'Unknown');
  });
});

describe('formatDate', () => {
  it('shows the date and time in the given locale and zone', () => {
    assert.equal(formatDate('2025-03-04T15:06:00Z', { locale: 'en-GB', timeZone: 'UTC' }), '4 Mar 2025, 15:06');
  });

  it('is empty for a missing or unreadable date', () => {
    assert.equal(formatDate(null), '');
    assert.equal(formatDate('not a date'), '');
  });
});

describe('failureReason', () => {
  it("quotes the server's error for a failed recording", () => {
    assert.equal(
      failureReason({ status: 'failed', error: 'provider answered 404' }),
      'Could not fetch the recording: provider answered 404',
    );
  });

  it('has a sentence for a failure without detail', () => {
    assert.equal(failureReason({ status: 'failed', error: null }), 'Could not fetch the recording from the provider.');
  });

  it('says to try again when the recording is still pending', () => {
    assert.match(failureReason({ status: 'processing' }), /longer than usual/);
    assert.match(failureReason(null), /longer than usual/);
  });
});
