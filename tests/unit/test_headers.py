"""The engine's header parser returns exactly what nats-py's does, for any header block."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS

from nanoservice.nats.headers import install, parse_header_lines

NAMES = st.text(alphabet=st.sampled_from("Nano-StepRevisin\t :\x1c\xe9"), min_size=0, max_size=12)
VALUES = st.text(max_size=20)
LINES = st.lists(
    st.one_of(
        st.tuples(NAMES, VALUES).map(lambda kv: f"{kv[0]}: {kv[1]}".encode()),
        st.binary(max_size=20),
    ),
    max_size=6,
)


@settings(max_examples=400)
@given(LINES)
def test_same_result_as_nats_py(lines: list[bytes]) -> None:
    raw = b"\r\n".join(lines) + b"\r\n\r\n"
    assert parse_header_lines(raw) == NATS._parse_header_lines(raw)


def test_engine_headers() -> None:
    raw = b"Nano-Step: a\r\nNano-Revision: 0074b12ed5cf\r\nNats-Msg-Id: e1:a:b\r\n\r\n"
    assert parse_header_lines(raw) == {
        "Nano-Step": "a",
        "Nano-Revision": "0074b12ed5cf",
        "Nats-Msg-Id": "e1:a:b",
    }


def test_install_replaces_the_parser_of_one_connection_only() -> None:
    mine, other = NATS(), NATS()
    assert install(mine)
    assert mine._parse_header_lines is parse_header_lines
    assert other._parse_header_lines is not parse_header_lines
