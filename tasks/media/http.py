"""Fetching media over HTTP: the allowlist, safe redirects, credentials, and answer checks.

A download attempt either returns a verified temporary file or raises :class:`ProviderError` saying whether
trying again can help.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

from tasks.errors import LeaseLost, MediaHostNotAllowed, ProviderError
from tasks.media import twilio_accounts
from tasks.media.addresses import AddressPolicy, PinnedAdapter, listed
from tasks.media.local import PartialFile, Written
from tasks.media.types import FORMATS, sniff_format
from tasks.settings import Settings

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
TWILIO_HOSTS = ("api.twilio.com",)
# Besides audio/*, the header types a 200 may carry (signed storage URLs often say octet-stream); whatever the
# header says, the body must announce a format of the table (tasks/media/types.py), which names the stored type.
SNIFFABLE = ("application/octet-stream", "binary/octet-stream")
#: How many bytes of the body the format is read from.
HEAD_BYTES = 16


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def host_key(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL.

    Raises:
        MediaHostNotAllowed: for another scheme or a URL without a host.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise MediaHostNotAllowed("media URLs must be http or https with a host")
    try:
        port = parts.port or _default_port(scheme)
    except ValueError as exc:
        raise MediaHostNotAllowed("media URL has an invalid port") from exc
    return scheme, parts.hostname.lower(), port


def is_allowed(url: str, allowlist: tuple[str, ...]) -> bool:
    """Whether ``url`` is on the allowlist: an entry ``host`` allows the scheme's default port, ``host:port``
    exactly that port."""
    try:
        scheme, host, port = host_key(url)
    except MediaHostNotAllowed:
        return False
    return listed(allowlist, scheme, host, port)


def check_media_url(url: str, settings: Settings) -> None:
    """Raises MediaHostNotAllowed unless ``url`` may be registered."""
    if not is_allowed(url, settings.media_hosts):
        raise MediaHostNotAllowed("media_url host is not on the allowlist (RECPLAY_MEDIA_HOSTS)")


def may_redirect_to(url: str, settings: Settings) -> bool:
    """A redirect target is followed only if allowlisted, or over https. Where the connection may then go
    (public addresses only, unless the host is an internal one) is checked when it is opened, on the very
    addresses it connects to (:mod:`tasks.media.addresses`)."""
    if is_allowed(url, settings.media_hosts):
        return True
    try:
        scheme, _, _ = host_key(url)
    except MediaHostNotAllowed:
        return False
    return scheme == "https"


def is_twilio_url(url: str | None, settings: Settings) -> bool:
    """Whether ``url`` is on Twilio's REST API: https://api.twilio.com, or the configured
    RECPLAY_TWILIO_API_BASE origin (a regional edge, or a stand-in in tests)."""
    if not url:
        return False
    try:
        key = host_key(url)
    except MediaHostNotAllowed:
        return False
    return key == host_key(settings.twilio_api_base) or key in {("https", h, 443) for h in TWILIO_HOSTS}


def credentials_for(url: str, settings: Settings) -> tuple[str, str] | None:
    """HTTP Basic credentials for a URL on Twilio's API, if configured: those of the account the URL names
    (:mod:`tasks.media.twilio_accounts`). Never for another host, nor for plain http to api.twilio.com."""
    if not is_twilio_url(url, settings):
        return None
    return twilio_accounts.credentials(settings, twilio_accounts.account_of(url))


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def check_status(response: requests.Response) -> None:
    """Raises ProviderError (and closes the response) unless it is a 200: 408, 425, 429 and 5xx are worth
    another attempt (after Retry-After, if given); anything else is permanent."""
    code = response.status_code
    if code == 200:
        return
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    response.close()
    if code in (408, 425, 429) or code >= 500:
        raise ProviderError(f"provider answered {code}", permanent=False, retry_after=retry_after,
                            status=code)
    raise ProviderError(f"provider answered {code}", permanent=True, status=code)


def _not_audio(head: bytes) -> ProviderError:
    markup = head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<script", b"<?xml"))
    what = "an HTML page" if markup else "a body that is not audio"
    return ProviderError(f"not audio: the provider sent {what}", permanent=True)


class TransferGuard:
    """Cuts a download off when it runs past ``max_download_seconds``, or when fewer than
    ``min_bytes_per_second`` arrived over a whole ``rate_window_seconds``: a thread looks every second and shuts
    the connection down, which ends the blocked read at once. ``reason`` then says why."""

    def __init__(self, response: requests.Response, settings: Settings, received: Callable[[], int]) -> None:
        self.response, self.settings, self.received = response, settings, received
        self.reason: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="transfer-guard", daemon=True)

    def __enter__(self) -> TransferGuard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        settings = self.settings
        started = window_started = time.monotonic()
        window_bytes = self.received()
        while not self._done.wait(min(1.0, settings.rate_window_seconds)):
            now = time.monotonic()
            if now - started > settings.max_download_seconds:
                self._cut(f"download cut off after {settings.max_download_seconds:g}s "
                          "(RECPLAY_MAX_DOWNLOAD_SECONDS)")
                return
            if now - window_started >= settings.rate_window_seconds:
                got = self.received() - window_bytes
                if got < settings.min_bytes_per_second * (now - window_started):
                    self._cut(f"provider sent {got} bytes in {now - window_started:.0f}s, under "
                              f"{settings.min_bytes_per_second} bytes/s (RECPLAY_MIN_BYTES_PER_SECOND)")
                    return
                window_started, window_bytes = now, self.received()

    def _cut(self, reason: str) -> None:
        self.reason = reason
        try:
            self.response.raw.shutdown()
        except Exception:  # the connection may be closing on its own: the read ends either way
            log.debug("shutting a guarded download down failed", exc_info=True)


@dataclass
class Fetcher:
    """Downloads one media URL into a partial file of the store.

    Every connection of its session obeys the address policy (:class:`tasks.media.addresses.PinnedAdapter`),
    and the session reads nothing from the environment (no proxy, no ``.netrc`` credentials).
    """

    settings: Settings
    session: requests.Session

    def __post_init__(self) -> None:
        self.session.trust_env = False
        adapter = PinnedAdapter(AddressPolicy(self.settings.media_hosts, self.settings.internal_media_hosts))
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, adapter)

    def fetch(self, url: str, partial: PartialFile, stop: threading.Event | None = None) -> Written:
        """Download ``url`` into ``partial`` and verify it.

        Raises:
            ProviderError: the attempt failed (``permanent`` says whether to retry); a URL whose host is no
                longer on the allowlist (it was registered before the host was removed) fails permanently.
            LeaseLost: ``stop`` was set (our slot was reclaimed) while the download ran.
        """
        if not is_allowed(url, self.settings.media_hosts):
            raise ProviderError("media host is no longer on the allowlist (RECPLAY_MEDIA_HOSTS)", permanent=True)
        response = self._open(url)
        with response:
            return self._read(response, partial, stop)

    def _open(self, url: str) -> requests.Response:
        origin = host_key(url)
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            # Never send credentials to another host; on Twilio's, those of the account the URL names.
            auth = credentials_for(current, self.settings) if host_key(current) == origin else None
            try:
                response = self.session.get(
                    current,
                    stream=True,
                    allow_redirects=False,
                    auth=auth,
                    timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                    headers={"Accept": "audio/*", "Accept-Encoding": "identity"},
                )
            except requests.RequestException as exc:
                raise ProviderError(f"provider unreachable: {type(exc).__name__}", permanent=False) from exc
            if response.is_redirect:
                target = urljoin(current, response.headers.get("Location", ""))
                response.close()
                if not may_redirect_to(target, self.settings):
                    raise ProviderError("redirect to a host that is not allowed", permanent=True)
                current = target
                continue
            check_status(response)
            return response
        raise ProviderError("too many redirects", permanent=True)

    def _read(self, response: requests.Response, partial: PartialFile,
              stop: threading.Event | None) -> Written:
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if not content_type.startswith("audio/") and content_type not in SNIFFABLE:
            raise ProviderError(f"provider answered a non-audio type {content_type or 'none'!r}",
                                permanent=True)
        declared = response.headers.get("Content-Length")
        expected = int(declared) if declared and declared.isascii() and declared.isdigit() else None
        if expected is not None and expected > self.settings.max_media_bytes:
            raise ProviderError("media larger than RECPLAY_MAX_MEDIA_BYTES", permanent=True)
        head = b""
        guard = TransferGuard(response, self.settings, lambda: partial.size)
        try:
            with guard:
                # read1: each read returns what one receive brought, so the guard counts bytes as they come.
                while chunk := response.raw.read1(CHUNK, decode_content=True):
                    if stop is not None and stop.is_set():
                        raise LeaseLost("slot lease lost during the download")
                    if len(head) < HEAD_BYTES:
                        head += chunk[:HEAD_BYTES - len(head)]
                    partial.write(chunk)
                    if partial.size > self.settings.max_media_bytes:
                        raise ProviderError("media larger than RECPLAY_MAX_MEDIA_BYTES", permanent=True)
        except (requests.RequestException, OSError, ConnectionError) as exc:
            raise ProviderError(guard.reason or f"download interrupted: {type(exc).__name__}",
                                permanent=False) from exc
        except Exception as exc:
            # urllib3's ProtocolError / ReadTimeoutError (a truncated or stalled body) are not OSErrors.
            if type(exc).__module__.startswith("urllib3"):
                raise ProviderError(guard.reason or f"download interrupted: {type(exc).__name__}",
                                    permanent=False) from exc
            raise
        if guard.reason:
            raise ProviderError(guard.reason, permanent=False)
        if partial.size == 0:
            raise ProviderError("provider sent an empty body", permanent=False)
        if expected is not None and partial.size != expected:
            raise ProviderError(f"body of {partial.size} bytes, Content-Length said {expected}",
                                permanent=False)
        # The stored type comes from the bytes, never from the header (which may say `audio/mpeg, text/html`).
        found = sniff_format(head)
        if found is None:
            raise _not_audio(head)
        return partial.finish(FORMATS[found].content_type)


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = "recplay/0.1"
    return session
