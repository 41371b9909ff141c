"""Finding a recording: the list filters by call sid prefix, status and creation days, server-side, with the
same cursor paging; bad filters are refused with 400 ``invalid_filter``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from tasks.catalog.models import Recording
from tasks.catalog.queries import Catalog, get_engine
from tests.media import make_ready
from tests.provider import make_wav


@pytest.fixture
def listed(api_for, settings):
    """Eight recordings of one business: call sids CA1..., CB1..., states new, ready and failed, over three
    days; and one of another business that must never show."""
    catalog = Catalog(settings)
    days = {"CA10": 1, "CA11": 2, "CA12": 3, "CA20": 3, "CB10": 1, "CB11": 2, "CB12": 3, "Ca13": 3}
    for call_sid in days:
        if call_sid in ("CA11", "CB12"):
            make_ready("biz", call_sid, make_wav(0.1), content_type="audio/wav")
        else:
            rec, _ = catalog.register("biz", call_sid, f"http://{settings.media_hosts[0]}/{call_sid}.wav", None)
            if call_sid in ("CA12", "CB10"):
                catalog.mark_failed(rec.id, "provider answered 404", 1)
    catalog.register("other", "CA19", f"http://{settings.media_hosts[0]}/x.wav", None)
    with get_engine(settings).begin() as conn:
        for call_sid, day in days.items():
            conn.execute(update(Recording).where(Recording.call_sid == call_sid)
                         .values(created_at=datetime(2026, 11, day, 12, tzinfo=UTC)))
    api = api_for("biz")

    def sids(query: str, limit: int = 50) -> list[str]:
        found, cursor = [], None
        while True:
            url = f"/api/recordings?limit={limit}&{query}" + (f"&cursor={cursor}" if cursor else "")
            answer = api.client.get(url, headers=api.headers)
            assert answer.status_code == 200, answer.get_json()
            body = answer.get_json()
            found += [item["call_sid"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return found

    return api, sids


def test_each_filter_narrows_the_list_newest_first(listed):
    _, sids = listed
    assert sids("q=CA1") == ["CA12", "CA11", "CA10"]  # case-sensitive: not Ca13
    assert sids("status=ready") == ["CB12", "CA11"]
    assert sids("status=failed") == ["CB10", "CA12"]
    assert sids("status=new") == ["Ca13", "CB11", "CA20", "CA10"]
    assert sids("from=2026-11-02&to=2026-11-02") == ["CB11", "CA11"]
    assert sids("from=2026-11-03") == ["Ca13", "CB12", "CA20", "CA12"]
    assert sids("to=2026-11-01") == ["CB10", "CA10"]
    assert sids("q=C&status=new&from=2026-11-02") == ["Ca13", "CB11", "CA20"]
    assert sids("q=CZ") == []


def test_filtered_pages_follow_the_cursor_without_gaps_or_repeats(listed):
    _, sids = listed
    assert sids("status=new", limit=1) == ["Ca13", "CB11", "CA20", "CA10"]
    assert sids("q=CA", limit=2) == ["CA20", "CA12", "CA11", "CA10"]


@pytest.mark.parametrize("query", ["q=CA%201", "q=" + "C" * 65, "status=done", "from=2026-13-01", "from=yesterday",
                                   "to=2026-11-1", "from=2026-11-03&to=2026-11-01"])
def test_a_bad_filter_is_refused_with_400(listed, query):
    api, _ = listed
    answer = api.client.get(f"/api/recordings?{query}", headers=api.headers)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (400, "invalid_filter")
