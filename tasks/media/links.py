"""Signed media links: the URL a player streams a stored recording from, checked without the catalog.

A link names one stored file of the local media directory (``/media/<business_id>/<call_sid>-<id>.<ext>``) and
carries its expiry and signature in the query string::

    /media/acme/CA123-42.mp3?expires=1767225600&sig=<base64url, no padding>

``sig`` is ``md5(expires + path + " " + secret)``, the expression nginx's ``secure_link_md5`` computes, so
nginx checks a link itself (deploy/nginx.conf) and sends the file with sendfile, and the API checks the same
link the same way when no nginx is in front (:mod:`api.media`). The path holds the recording's id, so a link
works for that one recording only, and a deleted recording's file is gone: its links answer 404 at once.

Everything the answer needs comes from the path and the file itself: the type from the extension (a fixed
table, never a provider's header), the length, ``ETag`` and ``Last-Modified`` from ``stat``, in nginx's format
(``"<mtime hex>-<size hex>"``), so a client sees the same validators from nginx and from the API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from functools import lru_cache

from tasks.errors import LinkExpired, LinkForged
from tasks.media.types import FALLBACK, FORMATS
from tasks.settings import Settings

#: Where media links live, in the API and in nginx.
PREFIX = "/media/"

#: The content type of each stored file's extension, from the one table of media types (tasks/media/types.py;
#: files are named by their type). nginx's media location declares the same table (tests/test_media_links.py
#: compares them); anything else is sent as application/octet-stream.
MEDIA_TYPES = {media.extension: media.content_type for media in FORMATS.values()}
OCTET_STREAM = FALLBACK

_ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
#: A stored file's key below the media directory: business_id/call_sid-recording_id.ext (ids as tasks.ids).
_KEY = re.compile(
    rf"(?P<business_id>{_ID})/(?P<call_sid>{_ID})-(?P<recording_id>[0-9]{{1,18}})\.(?P<ext>[a-z0-9]{{1,8}})")
_EXPIRES = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class MediaKey:
    """A stored file named by a media link."""

    key: str  # below the media directory
    business_id: str
    call_sid: str
    recording_id: int
    ext: str

    @property
    def content_type(self) -> str:
        return MEDIA_TYPES.get(self.ext, OCTET_STREAM)

    @property
    def download_name(self) -> str:
        """The file name of ``?download=1``: the call sid and the file's extension."""
        return f"{self.call_sid}.{self.ext}"


@lru_cache(maxsize=4096)
def parse_key(key: str) -> MediaKey | None:
    """The parts of a store key, or None when it is not one the local store writes. Kept, as
    :func:`signature`: a player sends the same link for range after range."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    return MediaKey(key, match["business_id"], match["call_sid"], int(match["recording_id"]), match["ext"])


@lru_cache(maxsize=4096)
def signature(secret: str, path: str, expires: int) -> str:
    """nginx's ``secure_link_md5 "$secure_link_expires$uri $secret"``: base64url of the MD5, no padding."""
    digest = hashlib.md5(f"{expires}{path} {secret}".encode(), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def media_link(settings: Settings, key: str, now: float | None = None) -> str:
    """A signed link to the stored file ``key``, valid for ``RECPLAY_STREAM_TOKEN_SECONDS``."""
    if parse_key(key) is None:
        raise ValueError(f"not a media key: {key!r}")
    expires = int(now if now is not None else time.time()) + settings.stream_token_seconds
    path = PREFIX + key
    return f"{path}?expires={expires}&sig={signature(settings.media_link_secret_value(), path, expires)}"


def check_link(settings: Settings, key: str, expires: str | None, sig: str | None,
               now: float | None = None) -> MediaKey:
    """The file a link names, once its signature and expiry hold.

    Raises:
        LinkForged: no signature, one that does not match, or a path that is no media key.
        LinkExpired: a genuine link past its expiry.
    """
    found = parse_key(key)
    if found is None or not expires or not sig or _EXPIRES.fullmatch(expires) is None:
        raise LinkForged("media link is not valid")
    wanted = signature(settings.media_link_secret_value(), PREFIX + key, int(expires))
    # nginx decodes the signature with or without base64 padding.
    if not hmac.compare_digest(wanted.encode(), sig.rstrip("=").encode()):
        raise LinkForged("media link is not valid")
    # As nginx: a link is good up to and including its expiry second.
    if int(expires) < int(now if now is not None else time.time()):
        raise LinkExpired("media link has expired: ask for the recording's status again")
    return found
