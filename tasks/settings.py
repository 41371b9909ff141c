"""One settings object, read from the environment in one place.

Every process (API, worker, beat, CLI) calls :func:`get_settings`; tests call :func:`reset_settings` after they
change the environment. Each setting's environment variable, default and minimum are written once, in its
field of :class:`Settings` (:func:`setting`); ``celeryconfig.py`` reads the same object.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError

DEFAULT_DATA_DIR = Path("./var")


# ---- how a raw environment value becomes a setting --------------------------------------------------------

#: Turns an environment variable's text into a value: (variable name, text, minimum) -> value.
Parser = Callable[[str, str, "float | None"], Any]


def _at_least(name: str, value: Any, minimum: float | None) -> Any:
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum:g}, got {value}")
    return value


def _integer(name: str, raw: str, minimum: float | None) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    return int(_at_least(name, value, minimum))


def _number(name: str, raw: str, minimum: float | None) -> float:
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    return float(_at_least(name, value, minimum))


def _flag(name: str, raw: str, minimum: float | None) -> bool:
    return raw.lower() in {"1", "true", "yes", "on"}


def _text(name: str, raw: str, minimum: float | None) -> str:
    return raw


def _path(name: str, raw: str, minimum: float | None) -> Path:
    return Path(raw).expanduser()


def _hosts(name: str, raw: str, minimum: float | None) -> tuple[str, ...]:
    return tuple(h.strip().lower() for h in raw.split(",") if h.strip())


def _no_trailing_slash(name: str, raw: str, minimum: float | None) -> str:
    return raw.rstrip("/")


def _no_outer_slashes(name: str, raw: str, minimum: float | None) -> str:
    return raw.strip("/")


def _trust_proxy(name: str, raw: str, minimum: float | None) -> int:
    """RECPLAY_TRUST_PROXY: empty/0/false trusts no forwarding header; 1/true one proxy; N that many."""
    raw = raw.lower()
    if raw in ("0", "false", "no", "off"):
        return 0
    if raw in ("true", "yes", "on"):
        return 1
    if raw.isdigit():
        return int(raw)
    raise ConfigError(f"{name} must be 0, 1 or a number of proxies, got {raw!r}")


def _accel_prefix(name: str, raw: str, minimum: float | None) -> str:
    if not raw.startswith("/"):
        raise ConfigError(f"{name} must be a location path starting with '/', got {raw!r}")
    return raw.rstrip("/") + "/"


@dataclass(frozen=True)
class TwilioAccount:
    """Credentials of one Twilio account (a subaccount, usually) from RECPLAY_TWILIO_ACCOUNTS: its auth token
    (needed to check its webhooks' signatures) and/or an API key of it (preferred for REST calls)."""

    sid: str
    auth_token: str | None = None
    api_key: str | None = None
    api_secret: str | None = None


_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")


def _twilio_account(name: str, sid: object, given: object) -> TwilioAccount:
    if not isinstance(sid, str) or not _ACCOUNT_SID.fullmatch(sid):
        raise ConfigError(f"{name}: {sid!r} is not an account SID (AC and 32 hex digits)")
    if isinstance(given, str):
        given = {"auth_token": given}
    if not isinstance(given, dict) or not set(given) <= {"auth_token", "api_key", "api_secret"}:
        raise ConfigError(f"{name}: {sid} must map to an auth token or to an object with auth_token and/or "
                          "api_key and api_secret")
    values = {key: value for key, value in given.items() if value is not None}
    if any(not isinstance(value, str) or not value for value in values.values()):
        raise ConfigError(f"{name}: the credentials of {sid} must be non-empty strings")
    if ("api_key" in values) != ("api_secret" in values):
        raise ConfigError(f"{name}: {sid} needs both api_key and api_secret, or neither")
    if "api_key" in values and not _API_KEY_SID.fullmatch(values["api_key"]):
        raise ConfigError(f"{name}: the api_key of {sid} is not an API key SID (SK and 32 hex digits)")
    if not values:
        raise ConfigError(f"{name}: {sid} has no credentials")
    return TwilioAccount(sid, **values)


def _twilio_accounts(name: str, raw: str, minimum: float | None) -> tuple[TwilioAccount, ...]:
    """RECPLAY_TWILIO_ACCOUNTS: a JSON object, account SID -> its auth token, or -> {"auth_token": ...,
    "api_key": "SK...", "api_secret": ...}."""
    try:
        given = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a JSON object: {exc}") from exc
    if not isinstance(given, dict):
        raise ConfigError(f"{name} must be a JSON object of account SID -> credentials")
    return tuple(_twilio_account(name, sid, value) for sid, value in given.items())
def _link_secret(name: str, raw: str, minimum: float | None) -> str:
    # It is written into nginx's configuration as well (a quoted string): keep it to URL-safe characters.
    if re.fullmatch(r"[A-Za-z0-9_-]{32,}", raw) is None:
        raise ConfigError(f"{name} must be at least 32 characters of A-Z, a-z, 0-9, '_' and '-' "
                          "(e.g. `openssl rand -hex 32`)")
    return raw


def _one_of(*choices: str) -> Parser:
    def parse(name: str, raw: str, minimum: float | None) -> str:
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")

    return parse


#: The parser of a field by its annotation, when its declaration names none.
_BY_TYPE: dict[str, Parser] = {"int": _integer, "float": _number, "bool": _flag, "str": _text, "str | None": _text,
                               "tuple[str, ...]": _hosts, "Path": _path}


def setting(env: str, default: Any, *, minimum: float | None = None, parse: Parser | None = None,
            keep_spaces: bool = False) -> Any:
    """Declare a setting: its environment variable, its default and its minimum, written here once.

    Args:
        env: the environment variable; unset or empty means the default.
        default: the value when the variable is unset (immutable).
        minimum: the smallest number accepted.
        parse: how the text becomes the value; by default chosen from the field's type.
        keep_spaces: take the text as given (secrets); else surrounding whitespace is dropped.
    """
    return field(default=default, metadata={"env": env, "minimum": minimum, "parse": parse,
                                            "keep_spaces": keep_spaces})


@dataclass(frozen=True)
class Settings:
    """Every setting of every process; :func:`load_settings` reads them from the environment."""

    # redis://host:port/db, or Redis Sentinel in kombu's form: sentinel://host:port;sentinel://host:port/db
    redis_url: str = setting("REDIS_URL", "redis://127.0.0.1:6379/0")
    # The master's name the sentinels know (only with a sentinel:// REDIS_URL).
    sentinel_master: str = setting("RECPLAY_SENTINEL_MASTER", "mymaster")
    data_dir: Path = setting("RECPLAY_DATA_DIR", DEFAULT_DATA_DIR)  # noqa: RUF009 - field() with metadata
    # Empty: the SQLite file in data_dir (load_settings fills it in).
    database_url: str = setting("DATABASE_URL", "")
    secret_key: str | None = setting("RECPLAY_SECRET_KEY", None, keep_spaces=True)
    dev: bool = setting("RECPLAY_DEV", False)
    admin_token: str | None = setting("RECPLAY_ADMIN_TOKEN", None, keep_spaces=True)
    # Bearer token GET /metrics asks for (none: open, for a scraper on the private network only).
    metrics_token: str | None = setting("RECPLAY_METRICS_TOKEN", None, keep_spaces=True)
    media_hosts: tuple[str, ...] = setting("RECPLAY_MEDIA_HOSTS", ("api.twilio.com",))
    # Hosts of RECPLAY_MEDIA_HOSTS that may resolve to loopback or private addresses (same syntax); every
    # other media host, and every redirect target, is connected to at public addresses only.
    internal_media_hosts: tuple[str, ...] = setting("RECPLAY_INTERNAL_MEDIA_HOSTS", ())
    max_concurrent: int = setting("RECPLAY_MAX_CONCURRENT", 5, minimum=1)
    lease_seconds: int = setting("RECPLAY_LEASE_SECONDS", 120, minimum=1)
    dedup_seconds: int = setting("RECPLAY_DEDUP_SECONDS", 1800, minimum=0)
    max_attempts: int = setting("RECPLAY_MAX_ATTEMPTS", 5, minimum=1)
    # Seconds a slot handed to a parked job stays reserved before its task claims it; if the hand-off message
    # is lost, the reservation expires and the sweeper hands the slot on.
    reservation_seconds: int = setting("RECPLAY_RESERVATION_SECONDS", 30, minimum=1)
    # A job still `queued` this long after its message was sent (and not parked) is dispatched again.
    queued_deadline_seconds: int = setting("RECPLAY_QUEUED_DEADLINE_SECONDS", 300, minimum=1)
    # How often beat runs the sweeper (tasks.sweep).
    sweep_seconds: float = setting("RECPLAY_SWEEP_SECONDS", 5.0, minimum=0.1)
    # First retry delay; doubles each attempt, capped by retry_backoff_max.
    retry_backoff_seconds: float = setting("RECPLAY_RETRY_BACKOFF_SECONDS", 2.0, minimum=0)
    retry_backoff_max_seconds: float = setting("RECPLAY_RETRY_BACKOFF_MAX_SECONDS", 300.0, minimum=0)
    connect_timeout: float = setting("RECPLAY_CONNECT_TIMEOUT", 10.0, minimum=0.1)
    read_timeout: float = setting("RECPLAY_READ_TIMEOUT", 60.0, minimum=0.1)
    max_media_bytes: int = setting("RECPLAY_MAX_MEDIA_BYTES", 512 * 1024 * 1024, minimum=1)
    # A download is cut off (a retryable failure, its slot freed at once) past this long, or when fewer than
    # min_bytes_per_second arrived over the last rate_window_seconds: a trickling provider never keeps a slot.
    max_download_seconds: float = setting("RECPLAY_MAX_DOWNLOAD_SECONDS", 1800.0, minimum=1)
    min_bytes_per_second: int = setting("RECPLAY_MIN_BYTES_PER_SECOND", 1024, minimum=0)
    rate_window_seconds: float = setting("RECPLAY_RATE_WINDOW_SECONDS", 60.0, minimum=1)
    # Every download is decoded through in a child process bounded in time and memory (tasks/media/decode.py).
    decode_seconds: float = setting("RECPLAY_DECODE_SECONDS", 300.0, minimum=1)
    decode_memory_bytes: int = setting("RECPLAY_DECODE_MEMORY_BYTES", 256 * 1024 * 1024, minimum=16 * 1024 * 1024)
    stream_token_seconds: int = setting("RECPLAY_STREAM_TOKEN_SECONDS", 3600, minimum=10)
    # Signs media links (tasks/media/links.py); nginx holds the same secret to check them itself. Unset: derived
    # from RECPLAY_SECRET_KEY, which is enough without nginx in front.
    media_link_secret: str | None = setting("RECPLAY_MEDIA_LINK_SECRET", None, parse=_link_secret)
    # A worker writes its heartbeat this often; one that misses MISSED_HEARTBEATS of them counts as gone.
    worker_heartbeat_seconds: float = setting("RECPLAY_WORKER_HEARTBEAT_SECONDS", 5.0, minimum=0.1)
    # Log lines as "text" (key=value job fields appended) or "json" (one object a line).
    log_format: str = setting("RECPLAY_LOG_FORMAT", "text", parse=_one_of("text", "json"))
    log_level: str = setting("RECPLAY_LOG_LEVEL", "INFO", parse=_one_of("DEBUG", "INFO", "WARNING", "ERROR"))
    twilio_account_sid: str | None = setting("TWILIO_ACCOUNT_SID", None, keep_spaces=True)
    twilio_api_key: str | None = setting("TWILIO_API_KEY", None, keep_spaces=True)
    twilio_api_secret: str | None = setting("TWILIO_API_SECRET", None, keep_spaces=True)
    twilio_auth_token: str | None = setting("TWILIO_AUTH_TOKEN", None, keep_spaces=True)
    # Credentials of other accounts (subaccounts), by account SID; an account not listed is reached with the
    # main account's credentials above (Twilio accepts them on its subaccounts' resources).
    twilio_accounts: tuple[TwilioAccount, ...] = setting("RECPLAY_TWILIO_ACCOUNTS", (), parse=_twilio_accounts,
                                                         keep_spaces=True)
    # --- The worker's Celery settings (celeryconfig.py reads them) ---
    # Redis redelivers an unacked message after this long: keep it above the longest download.
    visibility_timeout: int = setting("RECPLAY_VISIBILITY_TIMEOUT", 7200, minimum=1)
    worker_pool: str = setting("RECPLAY_WORKER_POOL", "threads")
    worker_concurrency: int = setting("RECPLAY_WORKER_CONCURRENCY", 16, minimum=1)
    # --- Deployment: database, Twilio, nginx, abuse limits, shared storage (docs/deploy.md) ---
    # Bring the catalog's schema to the code's revision when a process opens it. Unset: on for SQLite (one
    # host, nothing else to run), off for PostgreSQL, where `alembic upgrade head` is a deploy step.
    db_auto_migrate: bool = setting("RECPLAY_DB_AUTO_MIGRATE", None)
    db_pool_size: int = setting("RECPLAY_DB_POOL_SIZE", 5, minimum=1)
    db_max_overflow: int = setting("RECPLAY_DB_MAX_OVERFLOW", 10, minimum=0)
    # Twilio's REST API (a stand-in in tests), the media format asked for, and how long a 404 right after a
    # call is retried (the recording may not be processed yet).
    twilio_api_base: str = setting("RECPLAY_TWILIO_API_BASE", "https://api.twilio.com", parse=_no_trailing_slash)
    twilio_format: str = setting("RECPLAY_TWILIO_FORMAT", "mp3", parse=_one_of("mp3", "wav"))
    twilio_not_ready_seconds: float = setting("RECPLAY_TWILIO_NOT_READY_SECONDS", 120.0, minimum=0)
    # Answer the stream endpoint with X-Accel-Redirect to this internal location prefix; nginx sends the file.
    accel_redirect: str | None = setting("RECPLAY_ACCEL_REDIRECT", None, parse=_accel_prefix)
    # Trust X-Forwarded-Proto/Host/Port/Prefix from this many proxies in front (0: trust nothing).
    trust_proxy: int = setting("RECPLAY_TRUST_PROXY", 0, parse=_trust_proxy)
    # Fetch a recording as soon as Twilio's status callback says it is completed.
    prefetch: bool = setting("RECPLAY_PREFETCH", False)
    # Per-business request limits ("N/unit", several separated by ";": api/limits.py); the stream endpoint has
    # its own, higher one because players issue many Range requests. Set and empty: no limit.
    rate_limit: str = setting("RECPLAY_RATE_LIMIT", "600/minute")
    stream_rate_limit: str = setting("RECPLAY_STREAM_RATE_LIMIT", "3000/minute")
    rate_limit_storage_url: str | None = setting("RECPLAY_RATE_LIMIT_STORAGE_URL", None)
    # Media storage: "local" (RECPLAY_DATA_DIR/media) or "s3" (an S3-compatible bucket shared by all hosts).
    storage: str = setting("RECPLAY_STORAGE", "local", parse=_one_of("local", "s3"))
    s3_bucket: str | None = setting("RECPLAY_S3_BUCKET", None)
    s3_endpoint_url: str | None = setting("RECPLAY_S3_ENDPOINT_URL", None)
    s3_region: str | None = setting("RECPLAY_S3_REGION", None)
    s3_prefix: str = setting("RECPLAY_S3_PREFIX", "", parse=_no_outer_slashes)
    # S3 streaming: "redirect" (302 to a presigned URL) or "proxy" (the API streams the object with Range).
    s3_stream: str = setting("RECPLAY_S3_STREAM", "redirect", parse=_one_of("redirect", "proxy"))
    s3_presign_seconds: int = setting("RECPLAY_S3_PRESIGN_SECONDS", 300, minimum=10)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def sentinels(self) -> tuple[list[tuple[str, int]], int] | None:
        """The sentinels' addresses and the database number of a ``sentinel://`` REDIS_URL, else None.

        Raises:
            ConfigError: a sentinel URL without a host and port.
        """
        if not self.redis_url.startswith("sentinel://"):
            return None
        found, db = [], 0
        for part in self.redis_url.split(";"):
            address = part.strip().removeprefix("sentinel://")
            address, _, tail = address.partition("/")
            if tail.strip().isdigit():
                db = int(tail)
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"REDIS_URL: a sentinel must be host:port, got {part!r}")
            found.append((host.split("@")[-1], int(port)))
        return found, db

    @property
    def rate_limit_storage(self) -> str:
        """The abuse limits' counter storage: a ``redis://`` URL, or ``redis+sentinel://host:port,.../master``
        (api/limits.py)."""
        if self.rate_limit_storage_url:
            return self.rate_limit_storage_url
        sentinels = self.sentinels
        if sentinels is None:
            return self.redis_url
        hosts = ",".join(f"{host}:{port}" for host, port in sentinels[0])
        return f"redis+sentinel://{hosts}/{self.sentinel_master}"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "recplay.db"

    @cached_property
    def media_dir(self) -> Path:
        # Cached (as the derived link secret below): the API asks for it on every media link it answers.
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

    def media_link_secret_value(self) -> str:
        """The secret of media links: RECPLAY_MEDIA_LINK_SECRET, else one derived from the signing key (so a
        token secret never appears in nginx's configuration).

        Raises:
            ConfigError: when neither is set and development mode is off.
        """
        if self.media_link_secret:
            return self.media_link_secret
        return self._derived_media_link_secret

    @cached_property
    def _derived_media_link_secret(self) -> str:
        return hmac.new(self.signing_key().encode(), b"recplay media links", hashlib.sha256).hexdigest()


#: Settings whose variable, set to the empty string, means "empty" rather than "the default".
_EMPTY_MEANS_EMPTY = frozenset({"RECPLAY_RATE_LIMIT", "RECPLAY_STREAM_RATE_LIMIT"})


def _from_environment(spec: Field[Any]) -> Any:
    env = spec.metadata["env"]
    given = os.environ.get(env)
    if given is None:
        return spec.default
    text = given if spec.metadata["keep_spaces"] else given.strip()
    if not text:
        return "" if env in _EMPTY_MEANS_EMPTY else spec.default
    parse = spec.metadata["parse"] or _BY_TYPE[str(spec.type)]
    return parse(env, text, spec.metadata["minimum"])


def load_settings() -> Settings:
    """Read the settings from the environment (no caching).

    Raises:
        ConfigError: a variable holds a value its setting cannot take.
    """
    values = {spec.name: _from_environment(spec) for spec in fields(Settings) if "env" in spec.metadata}
    if not values["database_url"]:
        values["database_url"] = f"sqlite:///{(values['data_dir'] / 'recplay.db').absolute()}"
    if values["db_auto_migrate"] is None:
        values["db_auto_migrate"] = values["database_url"].startswith("sqlite")
    return Settings(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_settings.cache_clear()
