"""Reading what happened: traces, replays, live events, dead letters and status.

Functions here return plain dataclasses (JSON-able with ``dataclasses.asdict``); the CLI
renders them and the web console can reuse them. They read JetStream by subject filter
and never scan a whole stream. The engine core never imports this package.
"""
