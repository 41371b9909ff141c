"""Twilio recordings: media URLs in the configured format, resolution from a CallSid, and "not ready yet".

- Media lives on Twilio's REST API (``https://api.twilio.com``, or ``RECPLAY_TWILIO_API_BASE``) and is fetched
  with HTTP Basic: an API key SID and secret, or the account SID and auth token (:func:`credentials_for`).
- A recording URL without an extension (what the status callback's ``RecordingUrl`` looks like) gets
  ``.mp3`` (``RECPLAY_TWILIO_FORMAT``: ``mp3`` or ``wav``); a URL with an extension is kept as it is.
- A recording registered with ``{"provider": "twilio"}`` and no media URL is resolved from its CallSid through
  ``/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Recordings.json``, once; the URL is kept in the catalog.
  The account is the business's bound one (``recplay twilio-bind``), else the main account.
- Tenancy: for a business bound to an account, a recording URL of another account (or one whose account cannot
  be read, :func:`tasks.media.twilio_accounts.account_of`) fails permanently before anything is fetched, and a
  CallSid is looked up in the bound account only; registration refuses the same (tasks/recordings.py).
- Right after a call Twilio may still be processing the recording: a 404, an empty list or a recording not
  yet ``completed`` are retried (with the usual backoff) for ``RECPLAY_TWILIO_NOT_READY_SECONDS`` after the
  recording was registered; later they are permanent. A 429 backs off like every provider answer.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from tasks.catalog.models import RecordingRow
from tasks.catalog.queries import Catalog
from tasks.errors import ProviderError
from tasks.media.http import Fetcher, check_status, credentials_for
from tasks.media.local import PartialFile, Written
from tasks.media.twilio_accounts import account_of
from tasks.settings import Settings

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
#: Recording statuses after which the media will not come (Twilio's Recording resource).
GONE = ("absent", "deleted", "failed")
_RECORDING_SID = re.compile(r"RE[0-9a-fA-F]{32}")


def media_url(settings: Settings, account_sid: str, recording_sid: str) -> str:
    """The media URL of a recording, in the configured format."""
    return (f"{settings.twilio_api_base}/{API_VERSION}/Accounts/{quote(account_sid)}/Recordings/"
            f"{quote(recording_sid)}.{settings.twilio_format}")


def with_format(url: str, settings: Settings) -> str:
    """``url`` with the configured format's extension when its last path segment has none."""
    parts = urlsplit(url)
    last = parts.path.rsplit("/", 1)[-1]
    if not last or "." in last:
        return url
    return urlunsplit(parts._replace(path=f"{parts.path}.{settings.twilio_format}"))


def calls_recordings_url(settings: Settings, call_sid: str, account: str | None = None) -> str:
    """The list of a call's recordings in ``account`` (the main account by default)."""
    account = account or settings.twilio_account_sid or ""
    return (f"{settings.twilio_api_base}/{API_VERSION}/Accounts/{quote(account)}/Calls/{quote(call_sid)}"
            "/Recordings.json")


def call_url(settings: Settings, account: str, call_sid: str) -> str:
    return f"{settings.twilio_api_base}/{API_VERSION}/Accounts/{quote(account)}/Calls/{quote(call_sid)}.json"


def is_configured(settings: Settings, account: str | None = None) -> bool:
    """Whether recordings can be resolved from a CallSid: an account (``account``, else the main one) and
    credentials for it."""
    account = account or settings.twilio_account_sid
    return bool(account) and credentials_for(calls_recordings_url(settings, "CA", account), settings) is not None


def account_mismatch(bound: str | None, url: str) -> str | None:
    """Why ``url`` may not be fetched for a business bound to ``bound`` (None: it may, or nothing is bound)."""
    if bound is None:
        return None
    named = account_of(url)
    if named == bound:
        return None
    found = f"account {named}" if named else "no account it names unambiguously"
    return f"the recording URL is of {found}, the business is bound to {bound}"


def call_account(fetcher: Fetcher, account: str, call_sid: str) -> str | None:
    """The account a call belongs to, asked of Twilio under ``account``: None when Twilio does not know the call
    there (404).

    Raises:
        ProviderError: Twilio unreachable, or answered another error.
    """
    settings = fetcher.settings
    url = call_url(settings, account, call_sid)
    try:
        response = fetcher.session.get(
            url, auth=credentials_for(url, settings), allow_redirects=False,
            timeout=(settings.connect_timeout, settings.read_timeout), headers={"Accept": "application/json"},
        )
    except requests.RequestException as exc:
        raise ProviderError(f"Twilio unreachable: {type(exc).__name__}", permanent=False) from exc
    with response:
        if response.status_code == 404:
            return None
        check_status(response)
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderError("Twilio answered a call that is not JSON", permanent=False) from exc
    owner = body.get("account_sid") if isinstance(body, dict) else None
    return str(owner) if owner else None


class NotReady(ProviderError):
    """Raised when Twilio has no completed recording for the call yet."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=False)


def _age_seconds(rec: RecordingRow) -> float:
    return time.time() - rec.created_at.timestamp()


def list_call_recordings(fetcher: Fetcher, call_sid: str, account: str | None = None) -> list[dict[str, Any]]:
    """The Recording resources of a call in ``account`` (the main one by default), newest first as Twilio
    lists them.

    Raises:
        ProviderError: Twilio unreachable, or answered an error (429 and 5xx are transient).
    """
    settings = fetcher.settings
    url = calls_recordings_url(settings, call_sid, account)
    try:
        response = fetcher.session.get(
            url, params={"PageSize": 50}, auth=credentials_for(url, settings), allow_redirects=False,
            timeout=(settings.connect_timeout, settings.read_timeout), headers={"Accept": "application/json"},
        )
    except requests.RequestException as exc:
        raise ProviderError(f"Twilio unreachable: {type(exc).__name__}", permanent=False) from exc
    with response:
        check_status(response)
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderError("Twilio answered a recordings list that is not JSON",
                                permanent=False) from exc
    recordings = body.get("recordings") if isinstance(body, dict) else None
    if not isinstance(recordings, list):
        raise ProviderError("Twilio answered a recordings list without `recordings`", permanent=False)
    return [r for r in recordings if isinstance(r, dict)]


def pick_recording(recordings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The call's recording to play: the first one made (several exist when a call was recorded in parts)."""
    completed = [r for r in recordings if r.get("status") == "completed" and _RECORDING_SID.fullmatch(
        str(r.get("sid", "")))]
    if not completed:
        return None
    # Twilio lists newest first, so the last is the first made.
    return completed[-1]


def resolve(fetcher: Fetcher, catalog: Catalog, rec: RecordingRow, bound: str | None = None) -> str:
    """The media URL of ``rec``: its own (in the configured format), or resolved from its CallSid in the
    business's bound account ``bound`` (else the main account).

    Raises:
        NotReady: no completed recording yet (transient while the recording is young).
        ProviderError: Twilio failed, or the call has no recording and never will.
    """
    settings = fetcher.settings
    if rec.media_url:
        return with_format(rec.media_url, settings)
    if not is_configured(settings, bound):
        raise ProviderError("Twilio recording without a media URL, and no Twilio account configured",
                            permanent=True)
    recordings = list_call_recordings(fetcher, rec.call_sid, bound)
    chosen = pick_recording(recordings)
    if chosen is None:
        gone = recordings and all(r.get("status") in GONE for r in recordings)
        if gone:
            status = recordings[0].get("status")
            raise ProviderError(f"Twilio has no media for this call (recording {status})", permanent=True)
        if not recordings and bound is not None and call_account(fetcher, bound, rec.call_sid) != bound:
            # Not a call of the bound account at all: nothing will ever be listed for it there.
            raise ProviderError(f"twilio_account_mismatch: the call is not one of account {bound}, the "
                                "business's", permanent=True)
        raise NotReady(f"Twilio has no completed recording for this call yet ({len(recordings)} listed)")
    account = str(chosen.get("account_sid") or bound or settings.twilio_account_sid)
    url = media_url(settings, account, str(chosen["sid"]))
    mismatch = account_mismatch(bound, url)
    if mismatch:
        raise ProviderError(f"twilio_account_mismatch: {mismatch}", permanent=True)
    held = catalog.set_media_url(rec.id, url)
    log.info("resolved business_id=%s call_sid=%s recording_sid=%s",
             rec.business_id, rec.call_sid, chosen["sid"])
    return with_format(held, settings)


def fetch(fetcher: Fetcher, catalog: Catalog, rec: RecordingRow, partial: PartialFile,
          stop: threading.Event | None) -> Written:
    """Resolve and download a Twilio recording; "not ready" is transient while the recording is young.

    Raises:
        ProviderError, LeaseLost: as :meth:`tasks.media.http.Fetcher.fetch`.
    """
    young = _age_seconds(rec) < fetcher.settings.twilio_not_ready_seconds
    bound = catalog.twilio_account(rec.business_id)
    try:
        url = resolve(fetcher, catalog, rec, bound)
        # Checked again here, whatever was checked at registration: the binding may be newer than the row.
        mismatch = account_mismatch(bound, url)
        if mismatch:
            log.warning("refused business_id=%s call_sid=%s: %s", rec.business_id, rec.call_sid, mismatch)
            raise ProviderError(f"twilio_account_mismatch: {mismatch}", permanent=True)
        return fetcher.fetch(url, partial, stop)
    except NotReady as exc:
        if young:
            raise
        raise ProviderError(f"{exc} after {fetcher.settings.twilio_not_ready_seconds:.0f}s",
                            permanent=True) from exc
    except ProviderError as exc:
        if exc.status == 404 and young:
            raise ProviderError("Twilio answered 404: the recording is not ready yet", permanent=False,
                                status=404) from exc
        raise
