"""Provider callbacks. Twilio's recording status callback registers a finished recording (and fetches it at
once with RECPLAY_PREFETCH=1).

Configure it per business in TwiML or the REST API: ``recordingStatusCallback =
https://<public host>/webhooks/twilio/<business_id>/recordings`` (``recordingStatusCallbackEvent`` may keep
its default, ``completed``). Every request must carry a valid ``X-Twilio-Signature``: an HMAC of the public
URL Twilio requested and the form fields, keyed with the auth token of the callback's AccountSid (its own from
RECPLAY_TWILIO_ACCOUNTS, else TWILIO_AUTH_TOKEN). A business bound to a Twilio account (``recplay
twilio-bind``) takes callbacks of that account only (403 otherwise, logged). Behind a proxy, set
RECPLAY_TRUST_PROXY so the URL is rebuilt from X-Forwarded-Proto/Host/Port. A callback is acknowledged with
204 whatever it reports; repeated callbacks change nothing.
"""

from __future__ import annotations

import logging
import math

from flask import Blueprint, Response, request
from twilio.request_validator import RequestValidator

from api.auth import settings
from api.errors import ApiError
from tasks.catalog.models import TWILIO
from tasks.catalog.queries import Catalog
from tasks.errors import InvalidId, MediaHostNotAllowed
from tasks.ids import check_id
from tasks.media.http import check_media_url
from tasks.media.twilio_accounts import auth_token_for
from tasks.recordings import Recordings
from tasks.slots.client import get_redis

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


def _verify_twilio_signature() -> None:
    """Raises ApiError 403 unless the request is signed by Twilio with the auth token of the account it says it
    comes from (its own from RECPLAY_TWILIO_ACCOUNTS, else TWILIO_AUTH_TOKEN)."""
    token = auth_token_for(settings(), request.form.get("AccountSid"))
    if not token:
        log.warning("Twilio callback refused: TWILIO_AUTH_TOKEN is not set, signatures cannot be checked")
        raise ApiError(403, "forbidden", "Twilio callbacks are not configured")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not RequestValidator(token).validate(request.url, request.form, signature):
        log.warning("Twilio callback refused: bad signature url=%s", request.base_url)
        raise ApiError(403, "forbidden", "invalid X-Twilio-Signature")


def _duration(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value >= 0 else None


def _check_bound_account(business_id: str) -> None:
    """Raises ApiError 403 when the business is bound to a Twilio account and the callback is of another."""
    bound = Catalog(settings()).twilio_account(business_id)
    given = request.form.get("AccountSid", "")
    if bound is not None and given != bound:
        log.warning("Twilio callback refused: AccountSid %s, business_id=%s is bound to %s", given[:40],
                    business_id, bound)
        raise ApiError(403, "forbidden", "this callback is of another Twilio account than the business's")


@bp.post("/twilio/<business_id>/recordings")
def twilio_recording_status(business_id: str) -> Response:
    check_id(business_id, "business_id")
    _verify_twilio_signature()
    _check_bound_account(business_id)
    form = request.form
    status, call_sid, url = form.get("RecordingStatus"), form.get("CallSid", ""), form.get("RecordingUrl", "")
    ctx = f"business_id={business_id} call_sid={call_sid} recording_sid={form.get('RecordingSid', '')}"
    if status != "completed":
        log.info("Twilio recording %s, nothing to do %s", status, ctx)
        return Response(status=204)
    try:
        check_id(call_sid, "call_sid")
        check_media_url(url, settings())
    except (InvalidId, MediaHostNotAllowed) as exc:
        log.warning("Twilio callback ignored: %s %s", exc, ctx)
        raise ApiError(400, "invalid_body", str(exc)) from exc
    recs = Recordings(get_redis(), settings(), business_id)
    # A call recorded in several parts calls back once per recording: the first one is kept.
    rec, created = recs.register(call_sid, url, _duration(form.get("RecordingDuration")), TWILIO,
                                 from_callback=True)
    log.info("Twilio recording completed, %s %s", "registered" if created else "already registered", ctx)
    if settings().prefetch:
        recs.request(rec, "fetch")
    return Response(status=204)
