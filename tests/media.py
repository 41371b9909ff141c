"""Putting a ready recording in place through the domain, for tests about serving rather than fetching."""

from __future__ import annotations

import hashlib
from typing import Any

from tasks.catalog.queries import Catalog
from tasks.media.local import MediaStore
from tasks.settings import get_settings


def make_ready(business_id: str, call_sid: str, data: bytes, content_type: str = "audio/mpeg",
               media_url: str | None = None) -> Any:
    """Register a recording and store ``data`` as its media, as a finished download would."""
    settings = get_settings()
    catalog = Catalog(settings)
    url = media_url or f"http://{settings.media_hosts[0]}/{business_id}/{call_sid}.mp3"
    rec, _ = catalog.register(business_id, call_sid, url, 12.5)
    store = MediaStore(settings.media_dir)
    partial = store.open_partial(business_id, call_sid)
    partial.write(data)
    written = partial.finish(content_type)
    rel = store.commit(written, business_id, call_sid, rec.id)
    assert catalog.mark_ready(rec.id, size_bytes=len(data), content_type=content_type,
                              sha256=hashlib.sha256(data).hexdigest(), file_path=rel, attempts=1)
    return catalog.get(business_id, call_sid)
