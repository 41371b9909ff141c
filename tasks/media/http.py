"""Fetching media over HTTP: the allowlist, safe redirects, credentials, and answer checks.

A download attempt either returns a verified temporary file or raises :class:`ProviderError` saying whether
trying again can help.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

from tasks.errors import LeaseLost, MediaHostNotAllowed, ProviderError
from tasks.media.local import PartialFile, Written
from tasks.settings import Settings

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
TWILIO_HOSTS = ("api.twilio.com",)
# A 200 that is not audio but sniffs as audio is accepted (signed storage URLs often say octet-stream).
SNIFFABLE = ("application/octet-stream", "binary/octet-stream")


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
    for entry in allowlist:
        if entry == f"{host}:{port}":
            return True
        if entry == host and port == _default_port(scheme):
            return True
    return False


def check_media_url(url: str, settings: Settings) -> None:
    """Raises MediaHostNotAllowed unless ``url`` may be registered."""
    if not is_allowed(url, settings.media_hosts):
        raise MediaHostNotAllowed("media_url host is not on the allowlist (RECPLAY_MEDIA_HOSTS)")


def _is_public_host(host: str, port: int) -> bool:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_global or addr.is_multicast:
            return False
    return bool(infos)


def may_redirect_to(url: str, settings: Settings) -> bool:
    """A redirect target is followed only if allowlisted, or https to a host with only public addresses."""
    if is_allowed(url, settings.media_hosts):
        return True
    try:
        scheme, host, port = host_key(url)
    except MediaHostNotAllowed:
        return False
    return scheme == "https" and _is_public_host(host, port)


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
    """HTTP Basic credentials for a URL on Twilio's API, if configured: an API key SID and secret, else the
    account SID and auth token. Never for another host, nor for plain http to api.twilio.com."""
    if not is_twilio_url(url, settings):
        return None
    if settings.twilio_api_key and settings.twilio_api_secret:
        return settings.twilio_api_key, settings.twilio_api_secret
    if settings.twilio_account_sid and settings.twilio_auth_token:
        return settings.twilio_account_sid, settings.twilio_auth_token
    return None


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
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


def _looks_like_audio(head: bytes) -> bool:
    return (
        head.startswith((b"ID3", b"RIFF", b"OggS", b"fLaC"))
        or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0)  # MPEG frame sync
        or head[4:8] == b"ftyp"
    )


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
    """Downloads one media URL into a partial file of the store."""

    settings: Settings
    session: requests.Session

    def fetch(self, url: str, partial: PartialFile, stop: threading.Event | None = None) -> Written:
        """Download ``url`` into ``partial`` and verify it.

        Raises:
            ProviderError: the attempt failed (``permanent`` says whether to retry).
            LeaseLost: ``stop`` was set (our slot was reclaimed) while the download ran.
        """
        response = self._open(url)
        with response:
            return self._read(response, partial, stop)

    def _open(self, url: str) -> requests.Response:
        origin = host_key(url)
        auth = credentials_for(url, self.settings)
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            same_origin = host_key(current) == origin
            try:
                response = self.session.get(
                    current,
                    stream=True,
                    allow_redirects=False,
                    auth=auth if same_origin else None,  # never send credentials to another host
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
        expected = int(declared) if declared and declared.isdigit() else None
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
                    if len(head) < 16:
                        head += chunk[:16]
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
        if content_type in SNIFFABLE:
            if not _looks_like_audio(head):
                raise ProviderError("provider answered a body that is not audio", permanent=True)
            content_type = "audio/mpeg" if head.startswith(b"ID3") or head[:1] == b"\xff" else "audio/wav"
        if content_type == "audio/x-wav":
            content_type = "audio/wav"
        return partial.finish(content_type)


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = "recplay/0.1"
    return session
