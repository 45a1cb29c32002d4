"""Subject, stream and consumer names: the one place that knows the naming scheme.

A workflow ``orders`` lives on ``nano.orders.>`` in stream ``NANO_ORDERS``:

- ``nano.orders.<step>.<execution>``  input of a step
- ``nano.orders._start.<execution>``  the workflow's own trigger subject
- ``nano.orders._done.<execution>``   the result of an execution
- ``nano.orders._dlq.<execution>``    dead letters, with the reason
- ``nano.orders._timers.<step>.<execution>``  join timers of a join step (own consumer)

Names starting with ``_`` are reserved. The execution id is the last token so that one
execution's history is a server-side subject filter (``nano.orders.*.<execution>``).
"""

from __future__ import annotations

import os
import re
import time

__all__ = [
    "CALLS",
    "CANCEL",
    "DLQ",
    "DONE",
    "JOINS",
    "PREFIX",
    "REQUEST",
    "SCHEDULES",
    "START",
    "TABLES",
    "TOKEN",
    "consumer_name",
    "dlq_subject",
    "done_subject",
    "execution_filter",
    "execution_of",
    "is_valid_token",
    "matches",
    "new_execution_id",
    "request_subject",
    "start_subject",
    "step_filter",
    "step_prefix",
    "stream_name",
    "timer_consumer",
    "timer_prefix",
    "workflow_filter",
]

PREFIX = "nano"
START = "_start"
DONE = "_done"
DLQ = "_dlq"
TIMERS = "_timers"

TABLES = "nano_tables"
"""KV bucket of routing tables, one key per workflow."""
JOINS = "nano_joins"
"""KV bucket of join states, ``<workflow>.<step>.<execution>[.<iterations>]``."""
CALLS = "nano_calls"
"""KV bucket of callers' envelopes while a called workflow runs, by child execution."""
CANCEL = "nano_cancel"
"""KV bucket of cancelled executions, ``<workflow>.<execution>``."""
SCHEDULES = "nano_schedules"
"""KV bucket of the last tick started per schedule, ``<workflow>.<schedule>``."""
REQUEST = "_request"
"""``nano._request.<workflow>``: NATS requests answered with the outcome (not in any stream)."""

TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
"""A workflow, step or execution name: one subject token, safe in stream and consumer names."""


def is_valid_token(name: str) -> bool:
    return bool(TOKEN.match(name))


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, ``>`` the rest."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def stream_name(workflow: str) -> str:
    return "NANO_" + workflow.upper().replace("-", "_")


def workflow_filter(workflow: str) -> str:
    return f"{PREFIX}.{workflow}.>"


def step_prefix(workflow: str, step: str) -> str:
    """The subject of a step without the execution token; append ``.<execution>``."""
    return f"{PREFIX}.{workflow}.{step}"


def step_filter(workflow: str, step: str) -> str:
    return f"{PREFIX}.{workflow}.{step}.*"


def start_subject(workflow: str, execution: str) -> str:
    return f"{PREFIX}.{workflow}.{START}.{execution}"


def request_subject(workflow: str) -> str:
    """Where a NATS request starts ``workflow`` and gets its outcome as the reply; no
    stream captures it (a workflow name never starts with ``_``)."""
    return f"{PREFIX}.{REQUEST}.{workflow}"


def done_subject(workflow: str, execution: str) -> str:
    return f"{PREFIX}.{workflow}.{DONE}.{execution}"


def dlq_subject(workflow: str, execution: str) -> str:
    return f"{PREFIX}.{workflow}.{DLQ}.{execution}"


def execution_filter(workflow: str, execution: str) -> str:
    return f"{PREFIX}.{workflow}.*.{execution}"


def timer_prefix(workflow: str, step: str) -> str:
    """Join timers of a join step; append ``.<execution>``."""
    return f"{PREFIX}.{workflow}.{TIMERS}.{step}"


def timer_consumer(step: str) -> str:
    """The durable consumer of a join step's timers (``_`` keeps it apart from step names)."""
    return f"_timers-{step}"


def consumer_name(step: str) -> str:
    """Durable consumer of a step; replicas of the step share it (that is scaling)."""
    return step


def execution_of(subject: str) -> str:
    return subject.rsplit(".", 1)[-1]


def new_execution_id() -> str:
    """A time-ordered, random execution id: 12 hex digits of milliseconds + 10 random."""
    return f"{int(time.time() * 1000):012x}{os.urandom(5).hex()}"
