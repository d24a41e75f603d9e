"""Whatever arrives as `Upstash-Signature` (any text, any JOSE header, any claims, signed
with the right key or not), verification either accepts it or refuses it with a
`SignatureError`, whose reason the 401 names: anything else raised would be a 500 that
anyone could provoke without a key."""

import base64
import hashlib
import hmac
import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from qjobs.signature import ISSUER, SignatureError, VerifiedToken, body_digest, verify_signature
from tests.support import CURRENT_KEY, NEXT_KEY, NOTIFY, PUBLIC_BASE_URL

URL = PUBLIC_BASE_URL + NOTIFY
BODY = b'{"tripId":"trip-1"}'
KEYS = (CURRENT_KEY, NEXT_KEY)
NOW = 1_800_000_000.0
REAL_CLAIMS = {
    "iss": ISSUER,
    "sub": URL,
    "exp": NOW + 300,
    "nbf": NOW,
    "iat": NOW,
    "jti": "jwt_1",
    "body": body_digest(BODY),
}
"""The claims of a token that verifies (the test below checks that it does)."""
REASONS = {
    "malformed",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_url",
    "body_mismatch",
    "missing_claim",
}

# JSON as a hostile sender may write it: Python's json reads NaN, Infinity and integers of
# thousands of digits, and a string may hold a lone surrogate.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**4000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.sampled_from(["\ud800", "HS256", "none", "b64", "exp", ISSUER, URL]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
header_names = st.sampled_from(["alg", "typ", "kid", "crit", "b64", "cty", "jku", "x5u", "zip", "enc"]) | st.text()
claim_names = st.sampled_from(["iss", "sub", "exp", "nbf", "iat", "body", "jti", "aud"]) | st.text(max_size=8)
keys = st.sampled_from([CURRENT_KEY, NEXT_KEY, "sig_notAConfiguredKey00000000000000"])


def segment(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def as_json(value: object) -> bytes:
    return json.dumps(value, default=str).encode("utf-8", "surrogatepass")


def signed(header: bytes, claims: bytes, key: str) -> str:
    """A compact JWS over exactly these bytes, its HMAC made with `key`."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    mac = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{segment(mac)}"


def verifies_or_refuses(token: str) -> None:
    try:
        verified = verify_signature(token, body=BODY, url=URL, keys=KEYS, leeway=30, now=NOW)
    except SignatureError as refused:
        assert refused.reason in REASONS and refused.message
        return
    assert isinstance(verified, VerifiedToken) and math.isfinite(verified.expires_at)
    verified.valid_until(30)


@given(st.text())
def test_any_text_is_verified_or_refused(token: str) -> None:
    verifies_or_refuses(token)


@given(st.lists(st.text(alphabet="ABCabc012-_=+/.! \u00e9", max_size=40), min_size=1, max_size=5))
def test_any_dotted_segments_are_verified_or_refused(parts: list[str]) -> None:
    verifies_or_refuses(".".join(parts))


@given(
    header=st.dictionaries(header_names, values, max_size=5),
    alg=st.sampled_from([None, "HS256", "none", "HS512"]),
    claims=st.dictionaries(claim_names, values, max_size=8),
    key=keys,
)
@settings(max_examples=300)
def test_any_header_and_claims_signed_with_any_key_are_verified_or_refused(
    header: dict[str, object], alg: str | None, claims: dict[str, object], key: str
) -> None:
    if alg is not None:
        header = {**header, "alg": alg}
    verifies_or_refuses(signed(as_json(header), as_json(claims), key))


@given(
    claim=st.sampled_from(["iss", "sub", "exp", "nbf", "iat", "body", "jti"]),
    value=values,
    key=keys,
)
@settings(max_examples=300)
def test_a_real_token_with_any_one_claim_replaced_is_verified_or_refused(claim: str, value: object, key: str) -> None:
    """Close to a token that verifies, so that the claim checks themselves are reached."""
    claims = {**REAL_CLAIMS, claim: value}
    verifies_or_refuses(signed(b'{"alg":"HS256","typ":"JWT"}', as_json(claims), key))


@given(header=st.binary(max_size=64), claims=st.binary(max_size=64), key=keys)
def test_any_bytes_as_header_and_claims_are_verified_or_refused(header: bytes, claims: bytes, key: str) -> None:
    verifies_or_refuses(signed(header, claims, key))


def test_the_real_claims_verify() -> None:
    verified = verify_signature(
        signed(b'{"alg":"HS256","typ":"JWT"}', as_json(REAL_CLAIMS), CURRENT_KEY),
        body=BODY,
        url=URL,
        keys=KEYS,
        leeway=30,
        now=NOW,
    )
    assert verified == VerifiedToken(jti="jwt_1", expires_at=NOW + 300)


def test_deeply_nested_claims_are_refused() -> None:
    deep = b'{"iss":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    verifies_or_refuses(signed(b'{"alg":"HS256","typ":"JWT"}', deep, CURRENT_KEY))
