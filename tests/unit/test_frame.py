"""The PUB/HPUB frames the publisher writes follow the NATS client protocol."""

from __future__ import annotations

from nanoservice.nats.wire import frame


def test_plain_publish() -> None:
    assert frame("a.b", "_INBOX.1", b"hi", None) == b"PUB a.b _INBOX.1 2\r\nhi\r\n"


def test_publish_with_headers_counts_header_and_total_bytes() -> None:
    data = frame("a.b", "r", b"body", {"Nano-Step": "s1", "Nats-Msg-Id": "e:s1:s2"})
    head = b"NATS/1.0\r\nNano-Step: s1\r\nNats-Msg-Id: e:s1:s2\r\n\r\n"
    assert data == b"HPUB a.b r %d %d\r\n%s%s\r\n" % (len(head), len(head) + 4, head, b"body")


def test_header_values_cannot_break_the_frame() -> None:
    data = frame("a", "r", b"", {"Nano-Error": "line one\r\nline two"})
    assert b"Nano-Error: line one line two\r\n" in data
    assert data.count(b"\r\n") == 5  # command, version, header, blank line, end of payload


def test_the_private_nats_py_internals_wire_uses_exist() -> None:
    """wire.send writes frames through nats-py internals; nats-py is pinned for them."""
    from nats.aio.client import Client as NATS

    from nanoservice.nats import wire

    for method in ("_send_command", "_flush_pending"):
        assert callable(getattr(NATS, method, None)), f"nats-py has no Client.{method}"
    client = NATS()
    for attribute in ("_pending_data_size", "_max_pending_size", "_flush_queue"):
        assert hasattr(client, attribute), f"nats-py Client has no {attribute}"
    assert isinstance(client._pending_data_size, int)
    assert isinstance(client._max_pending_size, int)
    assert wire._DIRECT, "the direct write path is off with this nats-py"
