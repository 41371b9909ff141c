"""Which provider a recording comes from: Twilio (resolved from its CallSid, "not ready" retried for a while)
or a plain media URL on the allowlist."""

from __future__ import annotations

import threading

from tasks.catalog.models import TWILIO, RecordingRow
from tasks.catalog.queries import Catalog
from tasks.errors import ProviderError
from tasks.media import twilio
from tasks.media.http import Fetcher, is_twilio_url
from tasks.media.local import PartialFile, Written


def fetch_recording(fetcher: Fetcher, catalog: Catalog, rec: RecordingRow, partial: PartialFile,
                    stop: threading.Event | None = None) -> Written:
    """Download ``rec``'s media into ``partial``: its media URL, or for a Twilio recording the URL resolved
    from its CallSid, in the configured format, not-ready answers retried for a while (:mod:`tasks.media.twilio`).

    Raises:
        ProviderError, LeaseLost: as :meth:`tasks.media.http.Fetcher.fetch`.
    """
    if rec.provider == TWILIO or is_twilio_url(rec.media_url, fetcher.settings):
        return twilio.fetch(fetcher, catalog, rec, partial, stop)
    if not rec.media_url:
        raise ProviderError("recording has no media URL", permanent=True)
    return fetcher.fetch(rec.media_url, partial, stop)
