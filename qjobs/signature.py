"""QStash's `Upstash-Signature`: verification, and signing for local tools and tests.

Written on PyJWT rather than through `qstash.Receiver`, whose 3.4.0 release ignores its
clock tolerance, hides which check failed, cannot hash non-UTF-8 bodies and raises
`KeyError` for a token without a `body` claim. Here the HMAC is tried with each
configured key, then the claims are checked once, so the error names what failed.
"""

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

ISSUER = "Upstash"
TOKEN_LIFETIME_SECONDS = 300
REQUIRED_CLAIMS = ("iss", "sub", "exp", "nbf", "iat", "body", "jti")


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
    _require_hs256(token)
    claims = _decode_with_any_key(token, keys)
    return _check_claims(claims, body=body, url=url, leeway=leeway, now=time.time() if now is None else now)


def _require_hs256(token: str) -> None:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise SignatureError("malformed", "the signature is not a parseable JWT") from None
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
        except jwt.DecodeError:
            raise SignatureError("malformed", "the signature is not a parseable JWT") from None
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


def _number(claims: dict[str, object], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignatureError("missing_claim", f"the claim {name} is not a number")
    return float(value)


def _text(claims: dict[str, object], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise SignatureError("missing_claim", f"the claim {name} is not a non-empty string")
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
