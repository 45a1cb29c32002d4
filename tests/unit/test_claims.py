"""The claim check's decisions that need no server: threshold, object names, missing bodies."""

from __future__ import annotations

import msgspec
import pytest

from nanoservice.errors import NanoError
from nanoservice.nats.claims import THRESHOLD_ENV, claim_threshold, missing_body, object_name
from nanoservice.types import MSG_ID

MIB = 1024 * 1024


def test_the_default_threshold_leaves_an_eighth_of_max_payload_for_headers() -> None:
    assert claim_threshold(MIB, env={}) == 917_504
    assert claim_threshold(8 * MIB, env={}) == 7 * MIB


def test_the_keyword_wins_over_the_environment() -> None:
    assert claim_threshold(MIB, 1000, env={THRESHOLD_ENV: "2000"}) == 1000
    assert claim_threshold(MIB, env={THRESHOLD_ENV: " 2000 "}) == 2000
    assert claim_threshold(MIB, 0, env={}) == 0  # claim every non-empty body


def test_the_environment_is_read_when_no_keyword_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(THRESHOLD_ENV, "4096")
    assert claim_threshold(MIB) == 4096
    monkeypatch.setenv(THRESHOLD_ENV, "")
    assert claim_threshold(MIB) == 917_504


@pytest.mark.parametrize(
    ("configured", "env", "message"),
    [
        (None, {THRESHOLD_ENV: "1MB"}, r"NANO_CLAIM_THRESHOLD='1MB' is not a number of bytes"),
        (-1, {}, "claim threshold must be 0 or more bytes, not -1"),
        (None, {THRESHOLD_ENV: "-5"}, "not -5"),
    ],
)
def test_a_bad_threshold_is_one_line_saying_what(
    configured: int | None, env: dict[str, str], message: str
) -> None:
    with pytest.raises(NanoError, match=message):
        claim_threshold(MIB, configured, env=env)


def test_the_object_name_is_stable_for_a_message_id_so_a_republish_overwrites() -> None:
    headers = {MSG_ID: "e1:a:b"}
    assert object_name("nano.w.b.e1", headers) == "nano.w.b.e1/e1:a:b"
    assert object_name("nano.w.b.e1", headers) == object_name("nano.w.b.e1", dict(headers))
    # same message id on another subject (another workflow) is another object
    assert object_name("nano.v.b.e1", headers) != object_name("nano.w.b.e1", headers)


def test_without_a_message_id_every_object_name_is_new() -> None:
    names = {object_name("t.x", None), object_name("t.x", {}), object_name("t.x", {"a": "b"})}
    assert len(names) == 3 and all(n.startswith("t.x/") for n in names)


def test_the_body_of_a_missing_claim_says_why_and_is_not_json() -> None:
    body = missing_body("object 'x' is not in bucket nano_claims")
    assert b"object 'x' is not in bucket nano_claims" in body
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(body)
