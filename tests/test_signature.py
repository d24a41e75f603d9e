"""Signature verification, unit by unit, and through the app for the URL rules."""

import base64
import hashlib
import hmac
import re
import time
from datetime import UTC, datetime

import jwt
import pytest
from flask.testing import FlaskClient
from google.cloud import firestore
from qstash import Receiver
from qstash.errors import SignatureError as QStashSignatureError

from qjobs.signature import (
    EARLIEST_TIME,
    LATEST_TIME,
    SignatureError,
    VerifiedToken,
    body_digest,
    delivery_headers,
    sign,
    verify_signature,
)
from tests.support import (
    CURRENT_KEY,
    MEMORY,
    NEXT_KEY,
    NOTIFY,
    NOTIFY_PAYLOAD,
    PUBLIC_BASE_URL,
    AppFactory,
    Deliver,
    delivery_log_lines,
    encode,
    error_of,
    qstash_headers,
    unsigned_token,
)

URL = PUBLIC_BASE_URL + NOTIFY
BODY = b'{"tripId":"trip-1"}'
KEYS = (CURRENT_KEY, NEXT_KEY)
NOW = 1_800_000_000.0


def reason(token: str, *, body: bytes = BODY, url: str = URL, now: float = NOW, leeway: float = 30) -> str:
    with pytest.raises(SignatureError) as caught:
        verify_signature(token, body=body, url=url, keys=KEYS, leeway=leeway, now=now)
    return caught.value.reason


def test_a_fresh_token_verifies_and_yields_its_jti() -> None:
    token = sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, jti="jwt_1")
    verified = verify_signature(token, body=BODY, url=URL, keys=KEYS, leeway=30, now=NOW)
    assert verified.jti == "jwt_1"
    assert verified.expires_at == NOW + 300


def accepted(token: str, *, body: bytes = BODY, url: str = URL, now: float = NOW, leeway: float = 30) -> VerifiedToken:
    """The verified token, checked to carry the token's own id and expiry."""
    claims = jwt.decode(token, options={"verify_signature": False})
    verified = verify_signature(token, body=body, url=url, keys=KEYS, leeway=leeway, now=now)
    assert verified == VerifiedToken(jti=claims["jti"], expires_at=float(claims["exp"]))
    return verified


def test_a_token_signed_with_the_next_key_verifies() -> None:
    accepted(sign(BODY, url=URL, key=NEXT_KEY, now=NOW, jti="jwt_next"))


def test_tokens_are_judged_as_the_official_receiver_judges_them() -> None:
    """qstash.Receiver raises on a token it refuses (and returns nothing on one it accepts)."""
    receiver = Receiver(CURRENT_KEY, NEXT_KEY)
    token = sign(BODY, url=URL, key=CURRENT_KEY)
    receiver.verify(signature=token, body=BODY.decode(), url=URL)
    accepted(token, now=time.time())
    for tampered_body, tampered_url in ((b'{"tripId":"trip-2"}', URL), (BODY, URL + "?x=1")):
        with pytest.raises(QStashSignatureError):
            receiver.verify(signature=token, body=tampered_body.decode(), url=tampered_url)
        with pytest.raises(SignatureError):
            verify_signature(token, body=tampered_body, url=tampered_url, keys=KEYS, leeway=30)


def test_padding_of_the_body_claim_does_not_matter() -> None:
    unpadded = sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, body=body_digest(BODY))
    accepted(unpadded, leeway=0)


def test_non_utf8_bodies_verify() -> None:
    body = b"\xff\xfe\x00binary"
    token = sign(body, url=URL, key=CURRENT_KEY, now=NOW)
    accepted(token, body=body, leeway=0)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("not-a-jwt", "malformed"),
        ("a.b.c", "malformed"),
        (sign(BODY, url=URL, key="sig_someoneElsesKey0000000000000", now=NOW), "bad_signature"),
        (unsigned_token({"iss": "Upstash", "sub": URL, "exp": NOW + 300, "nbf": NOW, "iat": NOW}), "bad_signature"),
    ],
    ids=["garbage", "three-garbage-parts", "wrong-key", "alg-none"],
)
def test_tokens_that_do_not_verify(token: str, expected: str) -> None:
    assert reason(token) == expected


def test_other_algorithms_are_refused_even_with_the_right_key() -> None:
    claims = {"iss": "Upstash", "sub": URL, "exp": NOW + 300, "nbf": NOW, "iat": NOW, "jti": "j", "body": "x"}
    token = jwt.encode(claims, CURRENT_KEY + "-padded-to-be-long-enough-for-hs512-keys", algorithm="HS512")
    assert reason(token) == "bad_signature"


def test_expired_token() -> None:
    token = sign(BODY, url=URL, key=CURRENT_KEY, now=NOW - 400)
    assert reason(token) == "expired"


def test_expired_within_the_leeway_is_accepted() -> None:
    token = sign(BODY, url=URL, key=CURRENT_KEY, now=NOW - 320)
    accepted(token)
    assert reason(token, leeway=0) == "expired"


def test_token_from_the_future_is_not_yet_valid() -> None:
    token = sign(BODY, url=URL, key=CURRENT_KEY, now=NOW + 120)
    assert reason(token) == "not_yet_valid"


def test_a_token_issued_in_the_future_is_not_yet_valid_even_if_already_valid_by_nbf() -> None:
    assert reason(sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, iat=NOW + 120)) == "not_yet_valid"
    accepted(sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, iat=NOW + 20))


def test_a_receiver_clock_behind_by_less_than_the_leeway_accepts() -> None:
    token = sign(BODY, url=URL, key=CURRENT_KEY, now=NOW + 10)
    accepted(token)
    assert reason(token, leeway=0) == "not_yet_valid"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"iss": "Someone"}, "wrong_issuer"),
        ({"sub": PUBLIC_BASE_URL + MEMORY}, "wrong_url"),
        ({"sub": "https://other.example.test" + NOTIFY}, "wrong_url"),
        ({"sub": URL.replace("https://", "http://")}, "wrong_url"),
        ({"body": body_digest(b"other")}, "body_mismatch"),
        ({"body": None}, "missing_claim"),
        ({"exp": None}, "missing_claim"),
        ({"nbf": None}, "missing_claim"),
        ({"iat": None}, "missing_claim"),
        ({"sub": None}, "missing_claim"),
        ({"jti": None}, "missing_claim"),
        ({"exp": "soon"}, "missing_claim"),
    ],
)
def test_claims_are_checked_after_the_hmac(claims: dict[str, object], expected: str) -> None:
    assert reason(sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, **claims)) == expected


def test_claim_errors_are_named_even_for_the_next_key() -> None:
    token = sign(BODY, url=URL, key=NEXT_KEY, now=NOW - 1000)
    assert reason(token) == "expired"


def test_a_token_for_one_job_does_not_open_another_and_the_log_says_why(
    make_client: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client()  # built under capsys, so that its log handler writes where capsys reads
    body = encode(NOTIFY_PAYLOAD)
    response = client.post(MEMORY, data=body, headers=qstash_headers(NOTIFY, body))
    assert error_of(response) == (401, "invalid_signature", "wrong_url")
    (line,) = delivery_log_lines(capsys.readouterr().out)
    assert (line["error"], line["reason"], line["severity"]) == ("invalid_signature", "wrong_url", "WARNING")


def test_a_token_for_a_url_with_a_query_opens_that_url_only(client: FlaskClient) -> None:
    body = encode(NOTIFY_PAYLOAD)
    for signed_for, sent_to in (
        (NOTIFY + "?x=1", NOTIFY),
        (NOTIFY, NOTIFY + "?x=1"),
        (NOTIFY + "?x=1", NOTIFY + "?x=2"),
    ):
        response = client.post(sent_to, data=body, headers=qstash_headers(signed_for, body))
        assert error_of(response) == (401, "invalid_signature", "wrong_url"), (signed_for, sent_to)
    response = client.post(NOTIFY + "?x=1", data=body, headers=qstash_headers(NOTIFY + "?x=1", body))
    assert response.status_code == 200


def test_public_base_url_wins_over_the_host_header(client: FlaskClient) -> None:
    body = encode(NOTIFY_PAYLOAD)
    headers = qstash_headers(NOTIFY, body, base_url="https://attacker.example.test")
    response = client.post(NOTIFY, data=body, headers={**headers, "Host": "attacker.example.test"})
    assert error_of(response) == (401, "invalid_signature", "wrong_url")


def test_off_cloud_run_without_public_base_url_the_host_header_names_the_url(
    make_client: AppFactory, db: object
) -> None:
    client = make_client(PUBLIC_BASE_URL=None)
    body = encode(NOTIFY_PAYLOAD)
    signed_for = qstash_headers(NOTIFY, body, base_url="https://jobs.internal.test")
    assert client.post(NOTIFY, data=body, headers={**signed_for, "Host": "jobs.internal.test"}).status_code == 200
    forwarded = qstash_headers(NOTIFY, body, base_url="https://public.example.test")
    headers = {**forwarded, "Host": "10.0.0.1:8080", "X-Forwarded-Host": "public.example.test"}
    assert client.post(NOTIFY, data=body, headers=headers).status_code == 200
    plain_http = qstash_headers(NOTIFY, body, base_url="http://jobs.internal.test")
    response = client.post(NOTIFY, data=body, headers={**plain_http, "Host": "jobs.internal.test"})
    assert error_of(response) == (401, "invalid_signature", "wrong_url")


def test_region_keys_are_used_for_their_region(make_client: AppFactory, db: object) -> None:
    region_key = "sig_euCentralKey0000000000000000"
    client = make_client(EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY=region_key)
    body = encode(NOTIFY_PAYLOAD)
    regional = qstash_headers(NOTIFY, body, key=region_key)
    assert client.post(NOTIFY, data=body, headers={**regional, "upstash-region": "EU-CENTRAL-1"}).status_code == 200
    default_signed = qstash_headers(NOTIFY, body)
    response = client.post(NOTIFY, data=body, headers={**default_signed, "upstash-region": "EU-CENTRAL-1"})
    assert error_of(response) == (401, "invalid_signature", "bad_signature")
    other_region = qstash_headers(NOTIFY, body)
    assert client.post(NOTIFY, data=body, headers={**other_region, "upstash-region": "US-EAST-1"}).status_code == 200


def test_a_replayed_token_under_a_new_message_id_is_refused(deliver: Deliver, client: FlaskClient) -> None:
    body = encode(NOTIFY_PAYLOAD)
    headers = qstash_headers(NOTIFY, body, message_id="msg_original")
    assert client.post(NOTIFY, data=body, headers=headers).status_code == 200
    replay = client.post(NOTIFY, data=body, headers={**headers, "Upstash-Message-Id": "msg_forged"})
    assert error_of(replay) == (401, "invalid_signature", "replayed")
    same_message = client.post(NOTIFY, data=body, headers=headers)
    assert same_message.status_code == 200 and same_message.json is not None and same_message.json["duplicate"]


def test_signing_time_is_now_by_default() -> None:
    claims = jwt.decode(sign(BODY, url=URL, key=CURRENT_KEY), options={"verify_signature": False})
    assert abs(claims["iat"] - time.time()) < 5


@pytest.mark.parametrize(
    "forwarded_host",
    ["public.example.test, lb.internal", "public.example.test,lb.internal,10.0.0.2", " public.example.test "],
)
def test_off_cloud_run_the_first_forwarded_host_names_the_url(
    make_client: AppFactory, db: object, forwarded_host: str
) -> None:
    """Each proxy appends the host it was asked for: the first is the one QStash published to."""
    client = make_client(PUBLIC_BASE_URL=None)
    body = encode(NOTIFY_PAYLOAD)
    signed = qstash_headers(NOTIFY, body, base_url="https://public.example.test")
    headers = {**signed, "Host": "10.0.0.1:8080", "X-Forwarded-Host": forwarded_host, "X-Forwarded-Proto": "http"}
    response = client.post(NOTIFY, data=body, headers=headers)
    assert response.status_code == 200, response.json
    reversed_order = {**qstash_headers(NOTIFY, body, base_url="https://public.example.test"), "Host": "10.0.0.1:8080"}
    reversed_order["X-Forwarded-Host"] = "lb.internal, public.example.test"
    assert error_of(client.post(NOTIFY, data=body, headers=reversed_order)) == (401, "invalid_signature", "wrong_url")


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/api/jobs/memory-sync", {"userId": "u-copy", "conversationId": "c-copy", "syncType": "incremental"}),
        ("/api/jobs/failed", {"sourceMessageId": "msg_dead", "url": "https://jobs.example.test/api/jobs/memory-sync"}),
    ],
    ids=["memory-sync", "failure-callback"],
)
def test_an_identical_copy_of_a_first_delivery_is_a_duplicate_not_a_replay(
    client: FlaskClient, db: firestore.Client, path: str, payload: dict[str, str]
) -> None:
    """QStash may deliver one attempt twice, byte for byte: same token, same message id,
    `Upstash-Retried: 0`. Its token names that message, so the copy is the duplicate it is."""
    db.collection("conversations").document("c-copy").set({"userId": "u-copy"})
    body = encode(payload)
    headers = qstash_headers(path, body)
    first = client.post(path, data=body, headers=headers)
    copy = client.post(path, data=body, headers=headers)
    assert first.status_code == 200 and first.json is not None and first.json["duplicate"] is False
    assert copy.status_code == 200 and copy.json is not None and copy.json["duplicate"] is True, copy.json


def test_a_token_record_lives_until_the_token_expires_plus_the_leeway(
    client: FlaskClient, db: firestore.Client
) -> None:
    """Kept any shorter, a TTL policy would forget the token while it still verifies (the
    leeway extends `exp`), and it could be replayed under a new message id."""
    body = encode(NOTIFY_PAYLOAD)
    expires = int(time.time()) + 200
    headers = qstash_headers(NOTIFY, body, exp=expires)
    assert client.post(NOTIFY, data=body, headers=headers).status_code == 200
    (record,) = [doc.to_dict() or {} for doc in db.collection("jobTokens").stream()]
    assert record["expireAt"] == datetime.fromtimestamp(expires + 30, UTC), "exp + QSTASH_CLOCK_TOLERANCE_SECONDS"


# Refusals as the operator reads them, and claims the JWT library must not judge for us.


def refusal(token: str, *, body: bytes = BODY, now: float = NOW) -> tuple[str, str]:
    with pytest.raises(SignatureError) as caught:
        verify_signature(token, body=body, url=URL, keys=KEYS, leeway=30, now=now)
    return caught.value.reason, caught.value.message


def signed_claims_text(payload: bytes, key: str = CURRENT_KEY) -> str:
    """An HS256 token whose signature verifies but whose claims are `payload`, as is."""
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    claims = base64.urlsafe_b64encode(payload).rstrip(b"=")
    signature = hmac.new(key.encode(), header + b"." + claims, hashlib.sha256).digest()
    return b".".join((header, claims, base64.urlsafe_b64encode(signature).rstrip(b"="))).decode()


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("not-a-jwt", ("malformed", "the signature is not a parseable JWT")),
        (signed_claims_text(b"not json"), ("malformed", "the signature is not a parseable JWT")),
        (
            unsigned_token({"iss": "Upstash", "sub": URL, "exp": NOW + 300, "nbf": NOW, "iat": NOW}),
            ("bad_signature", "only HS256 signatures are accepted"),
        ),
        (
            sign(BODY, url=URL, key="sig_someoneElsesKey0000000000000", now=NOW),
            ("bad_signature", "no configured signing key verifies the signature"),
        ),
        (
            sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, body=None, jti=None),
            ("missing_claim", "the token lacks the claim(s): body, jti"),
        ),
        (sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, exp="soon"), ("missing_claim", "the claim exp is not a number")),
        (
            sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, sub=""),
            ("missing_claim", "the claim sub is not a non-empty string"),
        ),
        (
            sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, iss="Someone"),
            ("wrong_issuer", "the token was not issued by Upstash"),
        ),
        (sign(BODY, url=URL, key=CURRENT_KEY, now=NOW - 400), ("expired", "the token has expired")),
        (sign(BODY, url=URL, key=CURRENT_KEY, now=NOW + 120), ("not_yet_valid", "the token is not valid yet")),
        (
            sign(BODY, url=URL + "?x=1", key=CURRENT_KEY, now=NOW),
            ("wrong_url", "the token was issued for another URL"),
        ),
        (
            sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, body=body_digest(b"other")),
            ("body_mismatch", "the body does not match the signed digest"),
        ),
    ],
    ids=[
        "garbage",
        "claims-not-json",
        "alg-none",
        "unknown-key",
        "missing",
        "exp-not-a-number",
        "empty-sub",
        "issuer",
        "expired",
        "not-yet-valid",
        "url",
        "body",
    ],
)
def test_each_refusal_tells_the_operator_why(token: str, expected: tuple[str, str]) -> None:
    """The reason and its sentence are the 401's `details[0]`, which QStash's logs show: a
    refusal without its sentence, or with another refusal's, sends an operator the wrong way."""
    assert refusal(token) == expected
    with pytest.raises(SignatureError, match=f"^{re.escape(expected[1])}$"):
        verify_signature(token, body=BODY, url=URL, keys=KEYS, leeway=30, now=NOW)


@pytest.mark.parametrize(("claim", "value"), [("sub", 123), ("jti", 123), ("body", ["digest"]), ("iat", True)])
def test_a_claim_of_the_wrong_type_is_a_missing_claim_not_a_crash(claim: str, value: object) -> None:
    """The JWT library's own claim checks are off: it would raise its own errors (a 500 here)
    for a non-string `sub` or `jti`; the service names them `missing_claim`."""
    assert refusal(sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, **{claim: value}))[0] == "missing_claim"


def test_claims_qstash_does_not_send_are_not_judged() -> None:
    """An audience or any other registered claim QStash does not use neither opens nor closes."""
    accepted(sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, jti="jwt_aud", aud="someone-else", iss="Upstash"))


def test_a_token_is_good_up_to_its_expiry_plus_the_leeway_inclusive() -> None:
    token = sign(BODY, url=URL, key=CURRENT_KEY, now=NOW)
    expires = NOW + 300
    accepted(token, now=expires + 30)
    assert refusal(token, now=expires + 30.5)[0] == "expired"


def test_only_padding_may_follow_the_body_digest() -> None:
    for suffix in ("X", "=X", "A"):
        token = sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, body=body_digest(BODY) + suffix)
        assert refusal(token)[0] == "body_mismatch", suffix


def test_the_body_digest_is_unpadded_base64url_sha256() -> None:
    for body in (b"", BODY, b"\xff" * 1000):
        expected = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")
        assert body_digest(body) == expected and len(expected) == 43


def test_a_signed_token_has_the_header_qstash_tokens_have() -> None:
    assert jwt.get_unverified_header(sign(BODY, url=URL, key=CURRENT_KEY)) == {"alg": "HS256", "typ": "JWT"}


def test_delivery_headers_are_a_first_attempt_unless_told_otherwise() -> None:
    headers = delivery_headers(BODY, url=URL, key=CURRENT_KEY, message_id="msg_1")
    assert {name: value for name, value in headers.items() if name != "Upstash-Signature"} == {
        "Upstash-Message-Id": "msg_1",
        "Upstash-Retried": "0",
        "User-Agent": "Upstash-QStash",
    }
    accepted(headers["Upstash-Signature"], now=time.time())
    assert delivery_headers(BODY, url=URL, key=CURRENT_KEY, message_id="msg_1", retried=2)["Upstash-Retried"] == "2"


def test_during_a_key_rotation_a_delivery_signed_with_either_key_runs(make_client: AppFactory, db: object) -> None:
    """Through the app: the next key (and a region's next key) opens a delivery as the
    current one does, so rotating keys on QStash's side never rejects one."""
    client = make_client(
        EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY="sig_euCurrentKey000000000000000",
        EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY="sig_euNextKey000000000000000000",
    )
    body = encode(NOTIFY_PAYLOAD)
    for key, region in ((CURRENT_KEY, None), (NEXT_KEY, None), ("sig_euNextKey000000000000000000", "eu-central-1")):
        headers = {**qstash_headers(NOTIFY, body, key=key), **({"upstash-region": region} if region else {})}
        response = client.post(NOTIFY, data=body, headers=headers)
        assert response.status_code == 200, (key, response.json)


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"iat": 1e20}, ("malformed", "the claim iat is not a time in the years 1-9999")),
        ({"exp": -(10**12)}, ("malformed", "the claim exp is not a time in the years 1-9999")),
        ({"jti": "jwt_\ud800"}, ("malformed", "the claim jti is not valid text")),
    ],
    ids=["iat-past-9999", "exp-before-year-1", "lone-surrogate"],
)
def test_a_claim_no_time_or_text_can_hold_is_malformed_and_says_so(
    claims: dict[str, object], expected: tuple[str, str]
) -> None:
    assert refusal(sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, **claims)) == expected


def test_the_first_and_last_second_a_timestamp_holds_are_times() -> None:
    """Years 1 and 9999 are the bounds, both included: such a token is judged on its times
    like any other, not refused as malformed."""
    accepted(sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, nbf=EARLIEST_TIME, iat=EARLIEST_TIME, jti="jwt_old"))
    far = sign(BODY, url=URL, key=CURRENT_KEY, now=NOW, exp=LATEST_TIME, jti="jwt_far")
    assert accepted(far).expires_at == LATEST_TIME


def test_a_token_is_remembered_until_its_expiry_plus_the_leeway_and_never_past_9999() -> None:
    """How long a token's id is kept to refuse its replay: no shorter than it verifies, and
    no overflow for a token that expires near the last second a timestamp holds."""
    assert VerifiedToken("jwt_1", NOW).valid_until(30) == datetime.fromtimestamp(NOW + 30, UTC)
    assert VerifiedToken("jwt_1", NOW).valid_until(0) == datetime.fromtimestamp(NOW, UTC)
    last = datetime.fromtimestamp(LATEST_TIME, UTC)
    assert VerifiedToken("jwt_2", LATEST_TIME - 10).valid_until(30) == last
    assert VerifiedToken("jwt_3", LATEST_TIME - 40).valid_until(30) == datetime.fromtimestamp(LATEST_TIME - 10, UTC)
