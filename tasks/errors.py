"""The errors of the domain package."""

from __future__ import annotations


class RecplayError(Exception):
    """Base class of every error recplay raises on purpose."""


class ConfigError(RecplayError):
    """Raised when the environment holds a setting recplay cannot use."""


class InvalidId(RecplayError):
    """Raised when a business_id or call_sid does not match the identifier pattern."""


class AccessDenied(RecplayError):
    """Raised when a token is missing, malformed, forged, expired or of the wrong kind."""


class MediaHostNotAllowed(RecplayError):
    """Raised when a media URL (or a redirect) points at a host off the allowlist."""


class ProviderError(RecplayError):
    """Raised when a download attempt fails.

    Attributes:
        permanent: True when trying again cannot help (404, other 4xx, non-audio answer).
        retry_after: seconds the provider asked us to wait, if it said.
        status: the provider's HTTP status, when the attempt failed on one.
    """

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status


class LeaseLost(RecplayError):
    """Raised when a download's slot lease was reclaimed while it ran; its result must be discarded."""


class NotFound(RecplayError):
    """Raised when an operator names a recording the business does not have."""
