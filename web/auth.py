"""Who may read: HTTP Basic with Flower's credentials, or `Authorization: Bearer <WEB_API_TOKEN>`.

The accepted credentials are those Flower is given (WEB_USER + WEB_PASSWORD, or every
`user:password` pair of FLOWER_BASIC_AUTH), so one set opens the API, the dashboard and Flower.
They are read once, at startup, into `Credentials`; a request's header is then checked with
hmac.compare_digest against each (the "cached" check: no decoding of settings, no allocation
beyond the header's own), so the time taken does not tell a caller how much of a guess was right.
No credential appears in a response, an exception or a log line: a refusal says only that the
credentials were missing or wrong, and the header is never logged.

With WEB_NO_AUTH=1 (a local demo on a private machine, as for Flower) every request is let in.
Flower's OAuth (FLOWER_AUTH_PROVIDER) gives the API no password to check: set WEB_API_TOKEN then.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from dataclasses import dataclass, field

from core.settings import WebSettings

log = logging.getLogger("web.auth")

ACCEPTED_CACHE = 256
REALM = 'Basic realm="okx-collector", charset="UTF-8"'


@dataclass(frozen=True)
class Credentials:
    pairs: tuple[tuple[bytes, bytes], ...] = field(default=(), repr=False)  # (user, password)
    token: bytes = field(default=b"", repr=False)
    open: bool = False  # WEB_NO_AUTH=1: no check at all
    # Authorization headers already accepted: a repeat skips the decoding and the comparisons.
    # Only accepted headers enter (a wrong guess is always checked in full), and a set lookup
    # hashes the whole header, so its timing says nothing about how close a guess was.
    _accepted: set[str] = field(default_factory=set, repr=False, compare=False)

    @classmethod
    def from_settings(cls, web: WebSettings) -> Credentials:
        raw_pairs = list(web.basic_auth or ())
        if web.flower_basic_auth:
            raw_pairs += [p for p in web.flower_basic_auth.split(",") if ":" in p]
        pairs = []
        for pair in raw_pairs:
            user, _, password = pair.partition(":")
            pairs.append((user.encode(), password.encode()))
        return cls(tuple(pairs), web.api_token.encode(), web.no_auth)

    @property
    def configured(self) -> bool:
        return self.open or bool(self.pairs) or bool(self.token)

    def allows(self, header: str | None) -> bool:
        """Does the Authorization header carry one of the accepted credentials?"""
        if self.open:
            return True
        if not header:
            return False
        if header in self._accepted:  # a header already checked in full (bounded, below)
            return True
        ok = self._check(header)
        if ok and len(self._accepted) < ACCEPTED_CACHE:
            self._accepted.add(header)
        return ok

    def _check(self, header: str) -> bool:
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            given = value.encode("utf-8", "replace")
            return bool(self.token) and hmac.compare_digest(given, self.token)
        if scheme == "basic":
            return self._basic(value)
        return False

    def _basic(self, value: str) -> bool:
        try:
            decoded = base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        if not sep:
            return False
        ok = False
        for want_user, want_password in self.pairs:  # no early exit: every pair is compared
            same = hmac.compare_digest(user, want_user) & hmac.compare_digest(
                password, want_password
            )
            ok = ok or same
        return ok
