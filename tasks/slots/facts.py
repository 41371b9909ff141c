"""Recording facts: the few fields of a catalog row that the hot paths need, kept in Redis beside the job.

With a fact and a job, a duplicate ``fetch`` (or a status pushed to an events stream) is answered from Redis
alone, with no catalog read. The catalog stays the truth: a fact is written from a row the catalog returned
(or one that was just written to it), forgotten when the recording is deleted, and expires on its own; a
missing fact costs one catalog read, which writes it again.

Ownership needs no field: a fact's key carries its business (``recplay:{business}:fact:<call_sid>``), and a job
counts for a fact only when it names the same recording id, so a deleted-and-registered-again recording never
reads its predecessor's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from tasks.slots import keys
from tasks.slots.scripts import script


@dataclass(frozen=True)
class Fact:
    """One recording's hot catalog fields; ``file`` and the rest are set once it is ready."""

    recording_id: int
    created_at: str
    duration_seconds: float | None
    attempts: int = 0  # the catalog's, of the attempt that stored the file
    file: str | None = None
    size_bytes: int | None = None
    content_type: str | None = None
    channels: int | None = None  # the decoded channel count (peaks are stored when it is not 0)
    channel_labels: str | None = None  # the registration's labels, as the catalog keeps them (JSON)

    @property
    def ready(self) -> bool:
        return bool(self.file)

    def as_hash(self) -> dict[str, str]:
        return {
            "id": str(self.recording_id), "created_at": self.created_at,
            "duration_seconds": "" if self.duration_seconds is None else repr(self.duration_seconds),
            "attempts": str(self.attempts),
            "file": self.file or "", "size_bytes": "" if self.size_bytes is None else str(self.size_bytes),
            "content_type": self.content_type or "",
            "channels": "" if self.channels is None else str(self.channels),
            "channel_labels": self.channel_labels or "",
        }

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Fact | None:
        if "gone" in raw:
            return None  # a deleted recording's tombstone
        try:
            return cls(
                recording_id=int(raw["id"]), created_at=raw["created_at"],
                duration_seconds=float(raw["duration_seconds"]) if raw.get("duration_seconds") else None,
                attempts=int(raw.get("attempts") or 0),
                file=raw.get("file") or None,
                size_bytes=int(raw["size_bytes"]) if raw.get("size_bytes") else None,
                content_type=raw.get("content_type") or None,
                channels=int(raw["channels"]) if raw.get("channels") else None,
                channel_labels=raw.get("channel_labels") or None,
            )
        except (KeyError, ValueError):
            return None  # not one this module wrote: as if missing


def write_fact(client: redis.Redis, business_id: str, call_sid: str, fact: Fact) -> bool:
    """Store the fact whole, unless its recording was deleted (:func:`bury_fact`). Returns whether it was."""
    fields = [part for pair in fact.as_hash().items() for part in pair]
    return bool(script(client, "fact")(keys=[keys.fact(business_id, call_sid)],
                                       args=[keys.FACT_TTL_SECONDS, fact.recording_id, "write", *fields]))


def announce_ready(client: redis.Redis, business_id: str, call_sid: str, fact: Fact, message: str) -> bool:
    """The recording is stored and the catalog says ready: settle its job (tasks.slots.jobs.settle), store its
    fact (as :func:`write_fact`) and publish ``message`` (its ``ready`` event), in one round trip. Returns
    whether the fact was written (not when the recording was deleted meanwhile)."""
    fields = [part for pair in fact.as_hash().items() for part in pair]
    return bool(script(client, "ready")(
        keys=[keys.fact(business_id, call_sid), keys.claimed(business_id)],
        args=[keys.FACT_TTL_SECONDS, fact.recording_id, call_sid, keys.events(business_id, call_sid), message,
              *fields]))


def forget_fact(client: redis.Redis, business_id: str, call_sid: str) -> None:
    """Drop the fact of a recording that lives on (the next read of its row writes it again)."""
    client.delete(keys.fact(business_id, call_sid))


def bury_fact(client: redis.Redis, business_id: str, call_sid: str, recording_id: int) -> None:
    """Forget the fact of a deleted recording for good: a write racing the delete (a worker announcing its
    result, a status that read the row just before) cannot bring it back."""
    script(client, "fact")(keys=[keys.fact(business_id, call_sid)],
                           args=[keys.FACT_TTL_SECONDS, recording_id, "bury"])


def read_fact(raw: dict[str, str]) -> Fact | None:
    """The fact of an HGETALL reply (empty: none)."""
    return Fact.from_hash(raw) if raw else None
