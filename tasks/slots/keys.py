"""Every Redis key name recplay uses, and their lifetimes.

All keys of one business carry the hash tag ``{business_id}`` so that the Lua scripts, which touch several of
them at once, also run on Redis Cluster. ``business_id`` and ``call_sid`` are validated identifiers
(``tasks.ids``) before they reach this module, so they can never inject a key.
"""

from __future__ import annotations

from functools import lru_cache

PREFIX = "recplay"

#: SET of every business that has ever had a job; the sweeper and ``recplay status`` walk it (with SSCAN).
BUSINESSES = f"{PREFIX}:businesses"

#: HASH of counters the workers bump (downloads by outcome, reclaimed leases...), read by /metrics.
METRICS = f"{PREFIX}:metrics"

#: HASH worker name -> last heartbeat (ms); a worker that misses its heartbeats is gone.
WORKERS = f"{PREFIX}:workers"

#: Lock key the sweeper holds so that two beats running at once do not sweep together.
SWEEP_LOCK = f"{PREFIX}:sweep-lock"

#: The run id of the Redis server on which a sweep last brought back every wanted recording the catalog holds. A
#: Redis that lost data (a new one, one restarted from a snapshot, a promoted replica) lacks it or has another
#: run id, and the next sweep then reads the catalog's wanted rows once, page by page.
CATALOG_SYNCED = f"{PREFIX}:catalog-synced"

#: Set once every business's state is in this release's layout (``lua/migrate.lua``).
LAYOUT_V2 = f"{PREFIX}:layout-v2"

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


def waiting(business_id: str) -> str:
    """ZSET call_sid -> arrival sequence of the jobs parked for a slot, oldest first (O(log n) in and out)."""
    return f"{tag(business_id)}:waiting"


def fence(business_id: str) -> str:
    """Counter: the fence of the business's last attempt; never below Redis TIME (ms) * 10 (lua/lib.lua)."""
    return f"{tag(business_id)}:fence"


def limit(business_id: str) -> str:
    """The business's own concurrency limit (``recplay set-limit``); absent means the default."""
    return f"{tag(business_id)}:limit"


def due(business_id: str) -> str:
    """ZSET call_sid -> deadline (ms) of a queued job whose message is out without a reserved slot (a retry
    after its backoff): past it, the sweep puts the job back in line."""
    return f"{tag(business_id)}:due"


def sequence(business_id: str) -> str:
    """Counter: the arrival number of the business's jobs, their place in line."""
    return f"{tag(business_id)}:seq"


def claimed(business_id: str) -> str:
    """ZSET call_sid -> when (ms) a job finished (ready or failed) and the catalog had not recorded it yet;
    removed once it has (``jobs.settle``). The sweep settles what a dead worker left here."""
    return f"{tag(business_id)}:claimed"


def legacy_parked(business_id: str) -> str:
    """LIST of parked jobs in earlier releases; ``lua/migrate.lua`` empties it into :func:`waiting`."""
    return f"{tag(business_id)}:parked"


def legacy_active(business_id: str) -> str:
    """ZSET of live jobs in earlier releases; ``lua/migrate.lua`` empties it."""
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


@lru_cache(maxsize=4096)
def business_keys(business_id: str) -> tuple[str, ...]:
    """The keys every semaphore script takes, in the order the scripts expect them (lua/lib.lua). Kept per
    business: every script call of a download takes them."""
    return (
        holders(business_id),
        holder_info(business_id),
        waiting(business_id),
        fence(business_id),
        limit(business_id),
        due(business_id),
        sequence(business_id),
        claimed(business_id),
    )
