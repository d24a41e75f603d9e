"""QStash's `Upstash-Signature`: verification, and signing for local tools and tests.

Written on PyJWT rather than through `qstash.Receiver`, whose 3.4.0 release ignores its
clock tolerance, hides which check failed, cannot hash non-UTF-8 bodies and raises
`KeyError` for a token without a `body` claim. Here the HMAC is tried with each
configured key, then the claims are checked once, so the error names what failed.

Anyone can send a token, so nothing in one may raise anything but `SignatureError`: every
error the JWT library raises (a `crit` or `kid` header it refuses, say, before any key is
tried) is `malformed`, and so is a time claim no date can hold (NaN would pass every
comparison; Infinity and 1e20 overflow the token's record).
"""

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

ISSUER = "Upstash"
TOKEN_LIFETIME_SECONDS = 300
REQUIRED_CLAIMS = ("iss", "sub", "exp", "nbf", "iat", "body", "jti")
EARLIEST_TIME = -62_135_596_800
"""0001-01-01T00:00:00Z, in Unix seconds: the first second a datetime and a Firestore timestamp hold."""
LATEST_TIME = 253_402_300_799
"""9999-12-31T23:59:59Z, the last."""


class SignatureError(Exception):
    """The token does not prove that QStash sent this body to this URL."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class VerifiedToken:
    jti: str
    expires_at: float

    def valid_until(self, leeway: float) -> datetime:
        """Until when the token is accepted (its expiry plus the leeway): how long its id must
        be remembered to refuse a replay. Capped at the last second a timestamp holds, so a
        token that expires near it, or a very large leeway, is no overflow."""
        return datetime.fromtimestamp(min(self.expires_at + leeway, LATEST_TIME), UTC)


def body_digest(body: bytes) -> str:
    """base64url of SHA-256 over the raw bytes, without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")


def verify_signature(
    token: str,
    *,
    body: bytes,
    url: str,
    keys: Sequence[str],
    leeway: float,
    now: float | None = None,
) -> VerifiedToken:
    if not token.isascii():
        raise _malformed()
    _require_hs256(token)
    claims = _decode_with_any_key(token, keys)
    return _check_claims(claims, body=body, url=url, leeway=leeway, now=time.time() if now is None else now)


def _require_hs256(token: str) -> None:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _malformed() from None
    if header.get("alg") != "HS256":
        raise SignatureError("bad_signature", "only HS256 signatures are accepted")


def _decode_with_any_key(token: str, keys: Sequence[str]) -> dict[str, object]:
    for key in keys:
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                key,
                algorithms=["HS256"],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
            return claims
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            raise _malformed() from None
    raise SignatureError("bad_signature", "no configured signing key verifies the signature")


def _check_claims(claims: dict[str, object], *, body: bytes, url: str, leeway: float, now: float) -> VerifiedToken:
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise SignatureError("missing_claim", f"the token lacks the claim(s): {', '.join(missing)}")
    exp, nbf, iat = (_number(claims, name) for name in ("exp", "nbf", "iat"))
    sub, body_claim, jti = (_text(claims, name) for name in ("sub", "body", "jti"))
    if claims["iss"] != ISSUER:
        raise SignatureError("wrong_issuer", "the token was not issued by Upstash")
    if now > exp + leeway:
        raise SignatureError("expired", "the token has expired")
    if now + leeway < nbf or now + leeway < iat:
        raise SignatureError("not_yet_valid", "the token is not valid yet")
    if sub != url:
        raise SignatureError("wrong_url", "the token was issued for another URL")
    if not hmac.compare_digest(body_claim.rstrip("=").encode(), body_digest(body).encode()):
        raise SignatureError("body_mismatch", "the body does not match the signed digest")
    return VerifiedToken(jti=jti, expires_at=exp)


def _malformed() -> SignatureError:
    return SignatureError("malformed", "the signature is not a parseable JWT")


def _number(claims: dict[str, object], name: str) -> float:
    """A time claim in Unix seconds. JSON as Python reads it also holds NaN, Infinity and
    integers of any length: none of them is a time, and a signed one is a malformed token."""
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignatureError("missing_claim", f"the claim {name} is not a number")
    if not EARLIEST_TIME <= value <= LATEST_TIME:  # NaN too: every comparison with it is false
        raise SignatureError("malformed", f"the claim {name} is not a time in the years 1-9999")
    return float(value)


def _text(claims: dict[str, object], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise SignatureError("missing_claim", f"the claim {name} is not a non-empty string")
    try:
        value.encode()
    except UnicodeEncodeError:
        # JSON's `\ud800` escapes decode to a lone surrogate, which is no text: it cannot
        # be hashed (the body digest, the token's record) or stored.
        raise SignatureError("malformed", f"the claim {name} is not valid text") from None
    return value


def sign(body: bytes, /, *, url: str, key: str, now: float | None = None, **overrides: object) -> str:
    """A token as QStash makes one; `overrides` replace or (with None) drop claims."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": ISSUER,
        "sub": url,
        "exp": issued + TOKEN_LIFETIME_SECONDS,
        "nbf": issued,
        "iat": issued,
        "jti": f"jwt_{uuid.uuid4().hex}",
        "body": body_digest(body) + "=",
    }
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm="HS256", headers={"typ": "JWT"})


def delivery_headers(body: bytes, *, url: str, key: str, message_id: str, retried: int = 0) -> dict[str, str]:
    """The headers QStash delivers a message with: the local broker's deliveries and
    `qjobs send` must look the same to the service as QStash's own."""
    return {
        "Upstash-Message-Id": message_id,
        "Upstash-Retried": str(retried),
        "Upstash-Signature": sign(body, url=url, key=key),
        "User-Agent": "Upstash-QStash",
    }
