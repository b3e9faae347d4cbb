"""Webhook signatures: HMAC-SHA256 over ``"<t>." + body``, compared in constant time, 5 min of tolerance."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

import pytest

from wealthalloc.events import signing
from wealthalloc.events.signing import (
    MalformedSignature,
    SignatureError,
    SignatureFromFuture,
    SignatureMismatch,
    SignatureTooOld,
    sign,
    sign_many,
    verify,
)

SECRET = "whsec_test_0123456789abcdefghijklmnopqrstuvwxyz"
OLD_SECRET = "whsec_old_0123456789abcdefghijklmnopqrstuvwxyzAB"
BODY = b'{"data":{"amount":"42.00"},"id":"6f1c","type":"portfolio.cash_moved"}'
T = 1_700_000_000


def test_the_header_carries_the_timestamp_and_the_hmac_of_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, T)

    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={T},v1={expected}"
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)


def test_a_fresh_signature_verifies_and_returns_its_timestamp() -> None:
    assert verify(SECRET, sign(SECRET, BODY, T), BODY, now=T + 3) == T
    assert verify(SECRET.encode(), sign(SECRET, BODY, T), BODY, now=T) == T


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: (h, b + b" "), id="body-changed"),
        pytest.param(lambda h, b: (h.replace(f"t={T}", f"t={T + 1}"), b), id="timestamp-changed"),
        pytest.param(lambda h, b: (h[:-1] + ("0" if h[-1] != "0" else "1"), b), id="signature-changed"),
    ],
)
def test_any_change_to_body_timestamp_or_signature_is_a_mismatch(
    tamper: Callable[[str, bytes], tuple[str, bytes]],
) -> None:
    header, body = tamper(sign(SECRET, BODY, T), BODY)

    with pytest.raises(SignatureMismatch):
        verify(SECRET, header, body, now=T)


def test_another_secret_is_a_mismatch() -> None:
    with pytest.raises(SignatureMismatch, match="does not match"):
        verify("whsec_someone_elses_secret_0123456789abcdef", sign(SECRET, BODY, T), BODY, now=T)


def test_five_minutes_old_passes_a_second_more_is_too_old() -> None:
    header = sign(SECRET, BODY, T)

    assert verify(SECRET, header, BODY, now=T + 300) == T
    with pytest.raises(SignatureTooOld, match="301 s old"):
        verify(SECRET, header, BODY, now=T + 301)
    with pytest.raises(SignatureTooOld):
        verify(SECRET, header, BODY, now=T + 61, tolerance_s=60)


def test_a_timestamp_too_far_ahead_is_from_the_future() -> None:
    header = sign(SECRET, BODY, T)

    assert verify(SECRET, header, BODY, now=T - 300) == T  # the sender's clock a little ahead
    with pytest.raises(SignatureFromFuture, match="ahead"):
        verify(SECRET, header, BODY, now=T - 301)


def test_the_mac_is_checked_before_the_time_so_a_forgery_is_a_mismatch_whatever_its_date() -> None:
    forged = sign("whsec_guess_0123456789abcdefghijklmnopqrstu", BODY, T)

    with pytest.raises(SignatureMismatch):
        verify(SECRET, forged, BODY, now=T + 10_000)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "t=,v1=" + "a" * 64,
        f"t=abc,v1={'a' * 64}",
        f"t=-5,v1={'a' * 64}",
        f"t=1.5,v1={'a' * 64}",
        f"v1={'a' * 64}",
        f"t={T}",
        f"t={T},v0={'a' * 64}",
        f"t={T},v1=zz",
        f"t={T},v1={'g' * 64}",
        f"t={T},v1={'a' * 63}",
        f"t={T},t={T},v1={'a' * 64}",
        f"t={T},,v1={'a' * 64}",
        f"t={T}," + ",".join(f"v1={'a' * 64}" for _ in range(signing.MAX_SIGNATURES + 1)),
        f"t={T},v1={'a' * 64}," + "x" * signing.MAX_HEADER_LENGTH,
    ],
)
def test_malformed_headers_are_refused_as_malformed(header: str | None) -> None:
    with pytest.raises(MalformedSignature):
        verify(SECRET, header, BODY, now=T)


def test_every_refusal_is_a_signature_error() -> None:
    for error in (MalformedSignature, SignatureMismatch, SignatureTooOld, SignatureFromFuture):
        assert issubclass(error, SignatureError)


def test_during_a_rotation_one_header_carries_a_signature_per_secret_and_either_secret_verifies() -> None:
    header = sign_many([SECRET, OLD_SECRET], BODY, T)

    assert header.count("v1=") == 2
    assert verify(SECRET, header, BODY, now=T) == T
    assert verify(OLD_SECRET, header, BODY, now=T) == T
    assert verify([OLD_SECRET, SECRET], sign(SECRET, BODY, T), BODY, now=T) == T


def test_one_valid_signature_among_wrong_ones_and_unknown_schemes_passes() -> None:
    valid = sign(SECRET, BODY, T).split(",")[1]

    header = f"t={T},v1={'0' * 64},v2=future-scheme,{valid}"
    assert verify(SECRET, header, BODY, now=T) == T


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # signing looks it up on the module at each call
    header = f"t={T},v1={'0' * 64}," + sign(SECRET, BODY, T).split(",")[1]

    verify([OLD_SECRET, SECRET], header, BODY, now=T)

    assert len(compared) == 4  # every (secret, signature) pair, no early exit on the first match


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        sign_many([], BODY, T)
    with pytest.raises(ValueError):
        verify([], sign(SECRET, BODY, T), BODY, now=T)
