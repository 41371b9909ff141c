"""Every Redis key name recplay uses, and their lifetimes.

All keys of one business carry the hash tag ``{business_id}`` so that the Lua scripts, which touch several of
them at once, also run on Redis Cluster. ``business_id`` and ``call_sid`` are validated identifiers
(``tasks.ids``) before they reach this module, so they can never inject a key.
"""

from __future__ import annotations

PREFIX = "recplay"

#: SET of every business that has ever had a job; the sweeper and ``recplay status`` walk it.
BUSINESSES = f"{PREFIX}:businesses"

#: HASH of counters the workers bump (downloads by outcome, reclaimed leases...), read by /metrics.
METRICS = f"{PREFIX}:metrics"

#: HASH worker name -> last heartbeat (ms); a worker that misses its heartbeats is gone.
WORKERS = f"{PREFIX}:workers"

#: Lock key the sweeper holds so that two beats running at once do not sweep together.
SWEEP_LOCK = f"{PREFIX}:sweep-lock"

#: Finished jobs keep their Redis state this long after the dedup window, for status and debugging.
JOB_TTL_GRACE_SECONDS = 24 * 3600

#: A recording's fact (its catalog row's hot fields, :mod:`tasks.slots.facts`) lives this long after its last
#: write; a missing fact only costs one catalog read, which writes it again.
FACT_TTL_SECONDS = 24 * 3600


def tag(business_id: str) -> str:
    return f"{PREFIX}:{{{business_id}}}"


def holders(business_id: str) -> str:
    """ZSET call_sid -> lease expiry (ms since the epoch, Redis TIME). Expired members no longer count."""
    return f"{tag(business_id)}:holders"


def holder_info(business_id: str) -> str:
    """HASH call_sid -> "fence|task_id|worker" of the current holder (or reservation) of each slot."""
    return f"{tag(business_id)}:holder-info"


def parked(business_id: str) -> str:
    """LIST of call_sids waiting for a slot, oldest first."""
    return f"{tag(business_id)}:parked"


def fence(business_id: str) -> str:
    """Counter, INCR'd on every acquire: the fencing token of each attempt."""
    return f"{tag(business_id)}:fence"


def limit(business_id: str) -> str:
    """The business's own concurrency limit (``recplay set-limit``); absent means the default."""
    return f"{tag(business_id)}:limit"


def active_jobs(business_id: str) -> str:
    """ZSET call_sid -> time (ms) the job last changed, for jobs that are queued or processing."""
    return f"{tag(business_id)}:active"


def job_prefix(business_id: str) -> str:
    """Prefix of the job hashes; Lua builds ``job_prefix .. call_sid`` for jobs it hands a slot to."""
    return f"{tag(business_id)}:job:"


def job(business_id: str, call_sid: str) -> str:
    """HASH of one job: status, attempts, fence, task_id, media_url, error, timestamps."""
    return f"{job_prefix(business_id)}{call_sid}"


def fact(business_id: str, call_sid: str) -> str:
    """HASH of one recording's catalog facts the hot paths need: id, created_at, duration_seconds, and once
    ready file, size_bytes, content_type (:mod:`tasks.slots.facts`)."""
    return f"{tag(business_id)}:fact:{call_sid}"


def events(business_id: str, call_sid: str) -> str:
    """Pub/sub channel of one job's status changes (:mod:`tasks.slots.events`)."""
    return f"{tag(business_id)}:events:{call_sid}"


def business_keys(business_id: str) -> list[str]:
    """The keys every semaphore script takes, in the order the scripts expect them."""
    return [
        holders(business_id),
        holder_info(business_id),
        parked(business_id),
        fence(business_id),
        limit(business_id),
        active_jobs(business_id),
    ]
