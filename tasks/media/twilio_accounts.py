"""Twilio accounts: which account a URL belongs to, and which credentials reach it.

- A Twilio REST URL names its account in its path (``/2010-04-01/Accounts/AC.../Recordings/RE...``).
  :func:`account_of` reads it, and refuses to guess: a path with dot segments, percent-escapes or more than one
  ``Accounts`` segment names no account (a business bound to an account is then refused).
- Credentials: an account listed in ``RECPLAY_TWILIO_ACCOUNTS`` with its own (an API key, else its auth token);
  any other account with the main account's (``TWILIO_API_KEY``/``TWILIO_API_SECRET``, else
  ``TWILIO_ACCOUNT_SID``/``TWILIO_AUTH_TOKEN``): Twilio accepts a main account's credentials on the resources
  of its subaccounts.
- A webhook is signed with the auth token of the account it comes from: its own if listed, else the main one.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tasks.settings import Settings, TwilioAccount

ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")


def is_account_sid(value: object) -> bool:
    return isinstance(value, str) and ACCOUNT_SID.fullmatch(value) is not None


def account_of(url: str) -> str | None:
    """The account SID in a Twilio REST URL's path, or None when the path names none unambiguously."""
    path = urlsplit(url).path
    if "%" in path:
        return None
    segments = path.split("/")
    if any(segment in (".", "..") for segment in segments):
        return None
    found = [i for i, segment in enumerate(segments) if segment.lower() == "accounts"]
    if len(found) != 1 or found[0] + 1 >= len(segments):
        return None
    sid = segments[found[0] + 1]
    return sid if is_account_sid(sid) else None


def configured(settings: Settings, account: str | None) -> TwilioAccount | None:
    """The entry of RECPLAY_TWILIO_ACCOUNTS for ``account``, if there is one."""
    return next((entry for entry in settings.twilio_accounts if entry.sid == account), None) if account else None


def credentials(settings: Settings, account: str | None) -> tuple[str, str] | None:
    """HTTP Basic credentials for ``account``'s resources (None: the main account's, or none configured)."""
    own = configured(settings, account)
    if own is not None:
        if own.api_key and own.api_secret:
            return own.api_key, own.api_secret
        if own.auth_token:
            return own.sid, own.auth_token
    if settings.twilio_api_key and settings.twilio_api_secret:
        return settings.twilio_api_key, settings.twilio_api_secret
    if settings.twilio_account_sid and settings.twilio_auth_token:
        return settings.twilio_account_sid, settings.twilio_auth_token
    return None


def auth_token_for(settings: Settings, account: str | None) -> str | None:
    """The auth token the webhooks of ``account`` are signed with: its own if listed, else the main one."""
    own = configured(settings, account)
    if own is not None and own.auth_token:
        return own.auth_token
    return settings.twilio_auth_token
