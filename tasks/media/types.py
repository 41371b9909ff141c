"""The media types recplay stores and serves: one fixed table, keyed by the format found in the bytes.

A provider's Content-Type header is never what a client gets: the stored type comes from this table, and
whatever a catalog row holds (a row stored before this table existed may say ``audio/mpeg, text/html``) is
mapped through :func:`safe_content_type` on the way out, so every media answer names one of the table's types
or ``application/octet-stream``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple


class MediaType(NamedTuple):
    content_type: str
    extension: str


#: Every format recplay keeps: format -> (content type served, file extension stored).
FORMATS: Mapping[str, MediaType] = MappingProxyType({
    "mp3": MediaType("audio/mpeg", "mp3"),
    "wav": MediaType("audio/wav", "wav"),
    "ogg": MediaType("audio/ogg", "ogg"),
    "flac": MediaType("audio/flac", "flac"),
    "m4a": MediaType("audio/mp4", "m4a"),
})
#: What anything outside the table is served as: bytes no browser renders.
FALLBACK = "application/octet-stream"
FALLBACK_EXTENSION = "bin"

#: Every extension a recording's file was ever stored under: the table's, the fallback's, and two that an
#: earlier release gave ``audio/webm`` and ``audio/aac`` bodies. A recording's files are found by trying each
#: name, never by listing its business's directory (which holds every recording of the business).
STORED_EXTENSIONS = (*dict.fromkeys(media.extension for media in FORMATS.values()), FALLBACK_EXTENSION, "webm", "aac")

#: Other names of the table's types that rows stored before the table may hold; each maps into the table.
ALIASES = {
    "audio/mp3": "mp3", "audio/x-mp3": "mp3", "audio/mpeg3": "mp3",
    "audio/x-wav": "wav", "audio/wave": "wav", "audio/vnd.wave": "wav",
    "application/ogg": "ogg", "audio/opus": "ogg",
    "audio/x-flac": "flac",
    "audio/x-m4a": "m4a", "audio/m4a": "m4a",
}

_BY_CONTENT_TYPE = {media.content_type: media for media in FORMATS.values()}
_BY_CONTENT_TYPE.update({alias: FORMATS[name] for alias, name in ALIASES.items()})


def safe_content_type(stored: str | None) -> str:
    """The content type to serve for a stored one: the table's type when ``stored`` is exactly one of them or
    one of their :data:`ALIASES` (parameters and case aside), else :data:`FALLBACK`.

    ``audio/mpeg, text/html``, ``text/html``, ``audio/x-anything`` and an empty value all give the fallback.
    """
    if not stored:
        return FALLBACK
    essence = stored.split(";", 1)[0].strip().lower()
    media = _BY_CONTENT_TYPE.get(essence)
    return media.content_type if media is not None else FALLBACK


def extension_for(content_type: str) -> str:
    """The file extension a file of ``content_type`` is stored under (``bin`` outside the table)."""
    media = _BY_CONTENT_TYPE.get(safe_content_type(content_type))
    return media.extension if media is not None else FALLBACK_EXTENSION


def sniff_format(head: bytes) -> str | None:
    """The format the first bytes of a file announce, or None when they announce none of the table's.

    A cheap check of magic numbers, not a proof that the file plays.
    """
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return "mp3"  # an ID3 tag, or an MPEG audio frame sync
    if head.startswith(b"RIFF"):
        return "wav"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head[4:8] == b"ftyp":
        return "m4a"
    return None
