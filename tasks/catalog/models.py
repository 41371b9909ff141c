"""The catalog's data model: the recordings table, its detached row, the catalog states, and the Twilio
account each business is bound to.

Imported by :mod:`tasks.catalog.schema` (which creates the tables) and :mod:`tasks.catalog.queries` (which
reads and writes them); it imports neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Float, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Catalog states; the live `queued`/`processing` states of a job are in Redis.
NEW, WANTED, READY, FAILED = "new", "wanted", "ready", "failed"
# Where the media comes from: "http" (a registered media_url on the allowlist) or "twilio" (media_url may be
# unknown until the download resolves it from the CallSid).
HTTP, TWILIO = "http", "twilio"
PROVIDERS = (HTTP, TWILIO)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Recording(Base):
    __tablename__ = "recordings"
    __table_args__ = (
        UniqueConstraint("business_id", "call_sid", name="uq_recordings_business_call"),
        # Ids are never reused (SQLite would reuse the highest after a delete): jobs and downloads in flight
        # tell a deleted-and-registered-again recording from the old one by its id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    business_id: Mapped[str] = mapped_column(String(64), index=True)
    call_sid: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(16), default=HTTP, server_default=HTTP)
    media_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The channel count the decoder found, and the labels the registration gave them (JSON list of strings).
    channels: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channel_labels: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=NEW, index=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    file_path: Mapped[str | None] = mapped_column(String(512), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TwilioBinding(Base):
    """The Twilio account a business's recordings must come from (``recplay twilio-bind``): recordings and
    webhooks of any other account are refused for it. A business without a row keeps the unbound behaviour."""

    __tablename__ = "twilio_bindings"

    business_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_sid: Mapped[str] = mapped_column(String(34))
    bound_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@dataclass(frozen=True)
class RecordingRow:
    """A detached, immutable copy of a catalog row."""

    id: int
    business_id: str
    call_sid: str
    provider: str
    media_url: str | None
    duration_seconds: float | None
    channels: int | None
    channel_labels: str | None
    state: str
    error: str | None
    attempts: int
    size_bytes: int | None
    content_type: str | None
    sha256: str | None
    file_path: str | None
    created_at: datetime
    ready_at: datetime | None

    @classmethod
    def of(cls, rec: Recording) -> RecordingRow:
        return cls(
            id=rec.id, business_id=rec.business_id, call_sid=rec.call_sid, provider=rec.provider,
            media_url=rec.media_url, duration_seconds=rec.duration_seconds, channels=rec.channels,
            channel_labels=rec.channel_labels, state=rec.state, error=rec.error,
            attempts=rec.attempts, size_bytes=rec.size_bytes, content_type=rec.content_type, sha256=rec.sha256,
            file_path=rec.file_path, created_at=_utc(rec.created_at),
            ready_at=_utc(rec.ready_at) if rec.ready_at is not None else None,
        )

    @classmethod
    def from_mapping(cls, found: Mapping[str, Any]) -> RecordingRow:
        """A row of the recordings table (a Core result's ``_mapping``, or the values just inserted)."""
        values = {name: found[name] for name in _ROW_FIELDS}
        values["created_at"] = _utc(values["created_at"])
        if values["ready_at"] is not None:
            values["ready_at"] = _utc(values["ready_at"])
        return cls(**values)


_ROW_FIELDS = tuple(f.name for f in fields(RecordingRow))


def _utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; every value we store is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
