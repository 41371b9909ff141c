"""Binding a business to its Twilio account (``recplay twilio-bind``, ``PUT /api/ops/businesses/<id>/twilio``).

Once bound, the business's Twilio recordings must be of that account: registration refuses others (422
``twilio_account_mismatch``), the download checks again before fetching, a CallSid is looked up in that account
only, and a status callback must carry that AccountSid. Library code; the CLI and the ops API only call it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tasks.catalog.queries import Catalog
from tasks.errors import InvalidBody
from tasks.ids import check_id
from tasks.media.twilio_accounts import is_account_sid
from tasks.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Binding:
    business_id: str
    account_sid: str | None
    previous: str | None

    @property
    def changed(self) -> bool:
        return self.account_sid != self.previous

    def as_dict(self) -> dict[str, str | None]:
        return {"business_id": self.business_id, "account_sid": self.account_sid,
                "previous_account_sid": self.previous}


def twilio_binding(settings: Settings, business_id: str) -> Binding:
    """The account ``business_id`` is bound to (None: unbound)."""
    account = Catalog(settings).twilio_account(check_id(business_id, "business_id"))
    return Binding(business_id, account, account)


def bind_twilio(settings: Settings, business_id: str, account_sid: object) -> Binding:
    """Bind ``business_id`` to ``account_sid``, durably, replacing any binding.

    Raises:
        InvalidId: ``business_id`` is not an identifier.
        InvalidBody: ``account_sid`` is not a Twilio account SID (AC and 32 hex digits).
    """
    check_id(business_id, "business_id")
    if not isinstance(account_sid, str) or not is_account_sid(account_sid):
        raise InvalidBody("account_sid must be a Twilio account SID: AC and 32 hex digits")
    previous = Catalog(settings).bind_twilio(business_id, account_sid)
    if previous != account_sid:
        log.warning("Twilio account bound business_id=%s account_sid=%s previous=%s", business_id, account_sid,
                    previous)
    return Binding(business_id, account_sid, previous)
