"""The errors of the domain package.

The ones a request can cause sit under a middle class per answer (:class:`BadRequest`, :class:`AccessDenied`,
:class:`Forbidden`, :class:`NotFound`, :class:`Conflict`, :class:`Unprocessable`), each with the snake_case
``code`` a client sees, so the HTTP layer maps six classes, not every error.
"""

from __future__ import annotations


class RecplayError(Exception):
    """Base class of every error recplay raises on purpose."""

    #: The error code a client sees when a request caused it.
    code = "error"


class ConfigError(RecplayError):
    """Raised when the environment holds a setting recplay cannot use."""


class BadRequest(RecplayError):
    """Raised when a request is malformed (answered 400)."""

    code = "bad_request"


class InvalidId(BadRequest):
    """Raised when a business_id or call_sid does not match the identifier pattern."""

    code = "invalid_id"


class InvalidBody(BadRequest):
    """Raised when a request body is not what the call takes."""

    code = "invalid_body"


class AccessDenied(RecplayError):
    """Raised when a token is missing, malformed, forged, expired or of the wrong kind (answered 401)."""

    code = "unauthorized"


class Forbidden(RecplayError):
    """Raised when a request shows a credential that can never give it what it asks for (answered 403)."""

    code = "forbidden"


class LinkForged(Forbidden):
    """Raised when a media link's signature does not match its path and expiry (or it has none)."""

    code = "forbidden"


class LinkExpired(Forbidden):
    """Raised when a genuine media link is past its expiry; the recording's status hands out a new one."""

    code = "link_expired"


class NotFound(RecplayError):
    """Raised when a request or an operator names a recording the business does not have (answered 404)."""

    code = "not_found"


class Conflict(RecplayError):
    """Raised when a registration names a recording already registered with another media URL (409)."""

    code = "conflict"


class Unprocessable(RecplayError):
    """Raised when a well-formed request asks for what recplay will not do (answered 422)."""

    code = "unprocessable"


class MediaHostNotAllowed(Unprocessable):
    """Raised when a media URL (or a redirect) points at a host off the allowlist."""

    code = "media_host_not_allowed"


class TwilioNotConfigured(Unprocessable):
    """Raised when a Twilio recording is registered by its CallSid alone and no Twilio account is configured."""

    code = "twilio_not_configured"


class TwilioAccountMismatch(Unprocessable):
    """Raised when a business bound to a Twilio account registers a recording of another account."""

    code = "twilio_account_mismatch"


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
