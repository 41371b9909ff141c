"""One settings object, read from the environment in one place.

Every process (API, worker, beat, CLI) calls :func:`get_settings`; tests call :func:`reset_settings` after they
change the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from tasks.errors import ConfigError


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _hosts(raw: str) -> tuple[str, ...]:
    return tuple(h.strip().lower() for h in raw.split(",") if h.strip())


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path("./var")
    database_url: str = ""
    secret_key: str | None = None
    dev: bool = False
    admin_token: str | None = None
    media_hosts: tuple[str, ...] = ("api.twilio.com",)
    max_concurrent: int = 5
    lease_seconds: int = 120
    dedup_seconds: int = 1800
    max_attempts: int = 5
    # Seconds a slot handed to a parked job stays reserved before its task claims it; if the hand-off message
    # is lost, the reservation expires and the sweeper hands the slot on.
    reservation_seconds: int = 30
    # A job still `queued` this long after its message was sent (and not parked) is dispatched again.
    queued_deadline_seconds: int = 300
    # First retry delay; doubles each attempt, capped by retry_backoff_max.
    retry_backoff_seconds: float = 2.0
    retry_backoff_max_seconds: float = 300.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_media_bytes: int = 512 * 1024 * 1024
    stream_token_seconds: int = 3600
    # A worker writes its heartbeat this often; one that misses MISSED_HEARTBEATS of them counts as gone.
    worker_heartbeat_seconds: float = 5.0
    # Log lines as "text" (key=value job fields appended) or "json" (one object a line).
    log_format: str = "text"
    log_level: str = "INFO"
    twilio_account_sid: str | None = None
    twilio_api_key: str | None = None
    twilio_api_secret: str | None = None
    twilio_auth_token: str | None = None
    # --- Deployment: database, Twilio, nginx, abuse limits, shared storage (docs/deploy.md) ---
    # Bring the catalog's schema to the code's revision when a process opens it. Default: on for SQLite (one
    # host, nothing else to run), off for PostgreSQL, where `alembic upgrade head` is a deploy step.
    db_auto_migrate: bool = True
    db_pool_size: int = 5
    db_max_overflow: int = 10
    # Twilio's REST API (a stand-in in tests), the media format asked for, and how long a 404 right after a
    # call is retried (the recording may not be processed yet).
    twilio_api_base: str = "https://api.twilio.com"
    twilio_format: str = "mp3"
    twilio_not_ready_seconds: float = 120.0
    # Answer the stream endpoint with X-Accel-Redirect to this internal location prefix; nginx sends the file.
    accel_redirect: str | None = None
    # Trust X-Forwarded-Proto/Host/Port/Prefix from this many proxies in front (0: trust nothing).
    trust_proxy: int = 0
    # Fetch a recording as soon as Twilio's status callback says it is completed.
    prefetch: bool = False
    # Per-business request limits (flask-limiter syntax); the stream endpoint has its own, higher one because
    # players issue many Range requests. Empty: no limit.
    rate_limit: str = "600/minute"
    stream_rate_limit: str = "3000/minute"
    rate_limit_storage_url: str | None = None
    # Media storage: "local" (RECPLAY_DATA_DIR/media) or "s3" (an S3-compatible bucket shared by all hosts).
    storage: str = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_prefix: str = ""
    # S3 streaming: "redirect" (302 to a presigned URL) or "proxy" (the API streams the object with Range).
    s3_stream: str = "redirect"
    s3_presign_seconds: int = 300
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "recplay.db"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    def signing_key(self) -> str:
        """The key that signs access tokens.

        Raises:
            ConfigError: when no key is set and development mode is off.
        """
        if self.secret_key:
            return self.secret_key
        if self.dev:
            return "recplay-dev-secret-key-not-for-production"
        raise ConfigError("RECPLAY_SECRET_KEY is not set (set RECPLAY_DEV=1 for a development key)")


def _trust_proxy(raw: str) -> int:
    """RECPLAY_TRUST_PROXY: empty/0/false trusts no forwarding header; 1/true one proxy; N that many."""
    raw = raw.strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return 0
    if raw in ("true", "yes", "on"):
        return 1
    if raw.isdigit():
        return int(raw)
    raise ConfigError(f"RECPLAY_TRUST_PROXY must be 0, 1 or a number of proxies, got {raw!r}")


def _accel_prefix(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.startswith("/"):
        raise ConfigError(f"RECPLAY_ACCEL_REDIRECT must be a location path starting with '/', got {raw!r}")
    return raw.rstrip("/") + "/"


def load_settings() -> Settings:
    """Read the settings from the environment (no caching)."""
    data_dir = Path(os.environ.get("RECPLAY_DATA_DIR", "./var")).expanduser()
    database_url = os.environ.get("DATABASE_URL", "").strip() or f"sqlite:///{(data_dir / 'recplay.db').absolute()}"
    return Settings(
        redis_url=os.environ.get("REDIS_URL", "").strip() or "redis://127.0.0.1:6379/0",
        data_dir=data_dir,
        database_url=database_url,
        secret_key=os.environ.get("RECPLAY_SECRET_KEY") or None,
        dev=_flag("RECPLAY_DEV"),
        admin_token=os.environ.get("RECPLAY_ADMIN_TOKEN") or None,
        media_hosts=_hosts(os.environ.get("RECPLAY_MEDIA_HOSTS", "api.twilio.com")),
        max_concurrent=_int("RECPLAY_MAX_CONCURRENT", 5, minimum=1),
        lease_seconds=_int("RECPLAY_LEASE_SECONDS", 120, minimum=1),
        dedup_seconds=_int("RECPLAY_DEDUP_SECONDS", 1800),
        max_attempts=_int("RECPLAY_MAX_ATTEMPTS", 5, minimum=1),
        reservation_seconds=_int("RECPLAY_RESERVATION_SECONDS", 30, minimum=1),
        queued_deadline_seconds=_int("RECPLAY_QUEUED_DEADLINE_SECONDS", 300, minimum=1),
        retry_backoff_seconds=_float("RECPLAY_RETRY_BACKOFF_SECONDS", 2.0),
        retry_backoff_max_seconds=_float("RECPLAY_RETRY_BACKOFF_MAX_SECONDS", 300.0),
        connect_timeout=_float("RECPLAY_CONNECT_TIMEOUT", 10.0, minimum=0.1),
        read_timeout=_float("RECPLAY_READ_TIMEOUT", 60.0, minimum=0.1),
        max_media_bytes=_int("RECPLAY_MAX_MEDIA_BYTES", 512 * 1024 * 1024, minimum=1),
        stream_token_seconds=_int("RECPLAY_STREAM_TOKEN_SECONDS", 3600, minimum=10),
        worker_heartbeat_seconds=_float("RECPLAY_WORKER_HEARTBEAT_SECONDS", 5.0, minimum=0.1),
        log_format=_choice("RECPLAY_LOG_FORMAT", "text", ("text", "json")),
        log_level=_choice("RECPLAY_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        twilio_account_sid=os.environ.get("TWILIO_ACCOUNT_SID") or None,
        twilio_api_key=os.environ.get("TWILIO_API_KEY") or None,
        twilio_api_secret=os.environ.get("TWILIO_API_SECRET") or None,
        twilio_auth_token=os.environ.get("TWILIO_AUTH_TOKEN") or None,
        db_auto_migrate=(
            _flag("RECPLAY_DB_AUTO_MIGRATE") if os.environ.get("RECPLAY_DB_AUTO_MIGRATE", "").strip()
            else database_url.startswith("sqlite")
        ),
        db_pool_size=_int("RECPLAY_DB_POOL_SIZE", 5, minimum=1),
        db_max_overflow=_int("RECPLAY_DB_MAX_OVERFLOW", 10),
        twilio_api_base=(os.environ.get("RECPLAY_TWILIO_API_BASE", "").strip() or "https://api.twilio.com").rstrip("/"),
        twilio_format=_choice("RECPLAY_TWILIO_FORMAT", "mp3", ("mp3", "wav")),
        twilio_not_ready_seconds=_float("RECPLAY_TWILIO_NOT_READY_SECONDS", 120.0),
        accel_redirect=_accel_prefix(os.environ.get("RECPLAY_ACCEL_REDIRECT", "")),
        trust_proxy=_trust_proxy(os.environ.get("RECPLAY_TRUST_PROXY", "")),
        prefetch=_flag("RECPLAY_PREFETCH"),
        rate_limit=os.environ.get("RECPLAY_RATE_LIMIT", "600/minute").strip(),
        stream_rate_limit=os.environ.get("RECPLAY_STREAM_RATE_LIMIT", "3000/minute").strip(),
        rate_limit_storage_url=os.environ.get("RECPLAY_RATE_LIMIT_STORAGE_URL", "").strip() or None,
        storage=_choice("RECPLAY_STORAGE", "local", ("local", "s3")),
        s3_bucket=os.environ.get("RECPLAY_S3_BUCKET", "").strip() or None,
        s3_endpoint_url=os.environ.get("RECPLAY_S3_ENDPOINT_URL", "").strip() or None,
        s3_region=os.environ.get("RECPLAY_S3_REGION", "").strip() or None,
        s3_prefix=os.environ.get("RECPLAY_S3_PREFIX", "").strip().strip("/"),
        s3_stream=_choice("RECPLAY_S3_STREAM", "redirect", ("redirect", "proxy")),
        s3_presign_seconds=_int("RECPLAY_S3_PRESIGN_SECONDS", 300, minimum=10),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_settings.cache_clear()
