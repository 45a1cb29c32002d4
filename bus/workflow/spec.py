"""Workflow spec models: the YAML a user writes, validated with pydantic.

These models describe *what the user wrote*; :mod:`~nanoservice.workflow.compiler` turns them
into the routing table the hosts execute. Field descriptions here are the source of the generated
workflow reference and JSON Schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "CallSpec",
    "ForEachSpec",
    "HttpSpec",
    "JoinSpec",
    "LoopSpec",
    "RetrySpec",
    "RouteSpec",
    "ScheduleSpec",
    "StepSpec",
    "StreamSpec",
    "TriggerSpec",
    "WorkflowSpec",
]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _as_route(value: Any) -> Any:
    return {"to": value} if isinstance(value, list | str) else value


StepList = Annotated[list[str], BeforeValidator(_as_list, json_schema_input_type=str | list[str])]
"""One step name or a list of them."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class RetrySpec(_Spec):
    """How a failing step is retried before its error route or the dead-letter subject."""

    max_attempts: int = Field(3, ge=1, le=1000, description="Total tries, the first included.")
    backoff: list[Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: [0.5, 2.0, 10.0],
        description="Seconds to wait before each retry; the last value repeats.",
    )
    retry_on: list[str] | None = Field(
        None,
        description="Error type names that are retried (default: all but NonRetryableError).",
    )


class StreamSpec(_Spec):
    """Retention and durability of the workflow's JetStream stream."""

    max_age: float = Field(
        86_400.0,
        gt=0,
        description="Seconds a message is kept. Server memory grows with the executions "
        "kept (about 2 KB each at first, see docs/benchmarks.md): size it to the traffic.",
    )
    max_bytes: int = Field(-1, description="Byte limit of the stream (-1: none).")
    replicas: int = Field(1, ge=1, le=5, description="Stream replicas (3 on a cluster).")
    duplicate_window: float = Field(
        120.0, gt=0, description="Seconds in which a re-published message is de-duplicated."
    )


class HttpSpec(_Spec):
    """An HTTP route of the bridge (`nano bridge`, `nano up`) that starts the workflow."""

    path: str = Field(description="URL path, with `{name}` parameters, e.g. `/orders/{id}`.")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        "POST", description="HTTP method."
    )
    mode: Literal["sync", "async"] = Field(
        "sync",
        description="`sync`: answer with the result; `async`: answer 202 with the execution "
        "id and `Location: /executions/{id}` at once.",
    )
    timeout: float = Field(
        30.0, gt=0, le=3600, description="Seconds a sync request waits before answering 504."
    )
    headers: list[str] = Field(
        default_factory=list,
        description="Request headers copied into the input (`X-Tenant` becomes `x_tenant`).",
    )
    response: Literal["output", "http"] = Field(
        "output",
        description="`output`: the result is the JSON body (200); `http`: the result is "
        '`{"status", "headers", "body"}` and sets the response.',
    )
    output_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema of the result, for `/openapi.json`."
    )


class ScheduleSpec(_Spec):
    """A clock that starts the workflow: a cron expression or a fixed interval (UTC)."""

    name: str = Field(
        "tick", description="Schedule name (a subject token); part of each execution id."
    )
    cron: str | None = Field(None, description="Cron expression, 5 fields, UTC.")
    every: float | None = Field(
        None, ge=1, description="Seconds between ticks, aligned to the Unix epoch."
    )
    missed: Literal["skip", "catch_up"] = Field(
        "skip",
        description="Ticks missed while no scheduler ran: `skip` them, or `catch_up` "
        "(at most `max_catch_up`, the latest ones).",
    )
    max_catch_up: int = Field(10, ge=1, le=1000, description="Most missed ticks caught up.")
    input: dict[str, Any] = Field(
        default_factory=dict,
        description="The input of each execution; `tick` (ISO 8601 UTC) and `schedule` are added.",
    )


def _as_routes(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


class TriggerSpec(_Spec):
    """What starts an execution besides ``nano publish`` / ``nano.<wf>._start.<id>``."""

    subjects: list[str] = Field(
        default_factory=list, description="Extra NATS subjects; a publish to one starts a run."
    )
    http: Annotated[
        list[HttpSpec],
        BeforeValidator(_as_routes, json_schema_input_type=HttpSpec | list[HttpSpec]),
    ] = Field(default_factory=list, description="HTTP routes of the bridge (one or a list).")
    schedules: list[ScheduleSpec] = Field(
        default_factory=list, description="Cron or interval schedules."
    )


class RouteSpec(_Spec):
    """A route taken when its condition holds (or when the node chooses it by name)."""

    to: StepList = Field(description="Steps this route leads to.")
    when: str | None = Field(
        None, description="CEL condition over the scope plus `output` (the node's output)."
    )


def _as_join(value: Any) -> Any:
    return {"steps": value} if isinstance(value, list | str) else value


class JoinSpec(_Spec):
    """Wait for branches before running the step (a list is shorthand for `steps`)."""

    steps: StepList = Field(description="The branches (predecessor steps) to wait for.")
    mode: Literal["all", "any"] = Field(
        "all",
        description="`all`: wait for every branch that was taken (synchronization); `any`: "
        "run on the first branch to arrive and ignore the rest (discriminator).",
    )
    timeout: float | None = Field(
        None, gt=0, description="Seconds after the first branch arrives before giving up."
    )
    on_timeout: StepList = Field(
        default_factory=list,
        description="Steps that get the partial results on timeout (else the dead letters).",
    )


class LoopSpec(_Spec):
    """Repeat this step, or the steps from `back_to` to here, until a condition holds."""

    until: str = Field(description="CEL condition over the scope plus `output`; true stops.")
    max: int = Field(ge=1, le=100_000, description="Most iterations (required).")
    back_to: str | None = Field(
        None, description="Earlier step to repeat from (default: this step alone)."
    )
    on_max: Literal["fail", "continue"] = Field(
        "fail", description="At `max` without `until`: fail the step, or continue as if done."
    )


class CallSpec(_Spec):
    """Run another workflow as this step (its input is this step's input)."""

    workflow: str = Field(description="Name of the workflow to call.")
    wait: bool = Field(
        True, description="Wait for its result (the step's output); false: fire and forget."
    )


class ForEachSpec(_Spec):
    """Run the step's node once per item of a list; the output is the list of results."""

    items: str = Field(description="CEL expression giving the list.")
    concurrency: int = Field(8, ge=1, le=10_000, description="Items in flight at once.")
    on_item_error: Literal["fail", "skip", "collect"] = Field(
        "fail",
        description="`fail` the step (its retry and error policy apply), `skip` the item, or "
        '`collect` `{"error": ...}` in its place.',
    )


class StepSpec(_Spec):
    """One step: a node, its config, where its input comes from and where it goes next."""

    node: str | None = Field(
        None, description="Registered node name, e.g. `transform` (not with `call`)."
    )
    with_: dict[str, Any] = Field(
        default_factory=dict, alias="with", description="The node's config."
    )
    input: str | None = Field(
        None,
        description="CEL expression for the node's input (default: `prev`, the output of "
        "the step before, or the trigger payload for a first step).",
    )
    next: StepList = Field(
        default_factory=list, description="Steps that always follow (several = run in parallel)."
    )
    routes: dict[
        str,
        Annotated[
            RouteSpec,
            BeforeValidator(_as_route, json_schema_input_type=RouteSpec | str | list[str]),
        ],
    ] = Field(
        default_factory=dict,
        description="Named routes: a list of steps (taken when the node chooses the name) or "
        "`{to, when}` (taken when the condition holds).",
    )
    choose: Literal["first", "all"] = Field(
        "first",
        description="With conditions: take the `first` route that holds (exclusive choice) or "
        "`all` that hold (multi-choice).",
    )
    default: StepList = Field(
        default_factory=list, description="Steps taken when no route is chosen or holds."
    )
    join: Annotated[
        JoinSpec | None,
        BeforeValidator(_as_join, json_schema_input_type=JoinSpec | list[str] | None),
    ] = Field(None, description="Wait for several branches first (a list: all of these).")
    loop: LoopSpec | None = Field(None, description="Repeat until a condition holds.")
    call: CallSpec | None = Field(None, description="Run another workflow as this step.")
    for_each: ForEachSpec | None = Field(None, description="Map the node over a list.")
    set_vars: dict[str, str] = Field(
        default_factory=dict,
        description="Workflow variables to set after the step: name -> CEL over the scope "
        "plus `output`.",
    )
    on_error: StepList = Field(
        default_factory=list,
        description="Steps that get the error once retries are spent (instead of the DLQ).",
    )
    retry: RetrySpec = Field(default_factory=RetrySpec, description="Retry policy.")
    timeout: float = Field(30.0, gt=0, description="Seconds one attempt may take.")
    ack_wait: float | None = Field(
        None,
        ge=1,
        description="Seconds the server waits for an ack before redelivering (default: "
        "2 x timeout, at most 30; hosts send heartbeats for longer steps). Shorter brings a "
        "crashed host's messages back sooner.",
    )
    concurrency: int = Field(
        256, ge=1, le=100_000, description="Messages in flight per host for this step."
    )
    description: str | None = Field(None, description="Free text for people and graphs.")
    runtime: str | None = Field(
        None,
        description="Served by a host of another runtime (e.g. `node` for a TypeScript node; "
        "see docs/protocol.md, Foreign hosts): Python hosts skip the step, its node is not "
        "looked up and its `with:` is passed on as it is. Such a step uses only `node`, "
        "`with`, `next`, `retry`, `timeout`, `ack_wait` and `concurrency`.",
    )


class WorkflowSpec(_Spec):
    """A workflow: its trigger, input schema and steps."""

    name: str = Field(description="Workflow name; one subject token ([A-Za-z0-9_-]).")
    description: str | None = Field(None, description="Free text for people and graphs.")
    trigger: TriggerSpec = Field(default_factory=TriggerSpec, description="What starts it.")
    input: dict[str, Any] | None = Field(
        None, description="JSON Schema the trigger payload must match."
    )
    vars: dict[str, Any] = Field(
        default_factory=dict, description="Workflow variables, readable as `vars.<name>`."
    )
    start: StepList | None = Field(
        None, description="First step(s) (default: the first step listed)."
    )
    steps: dict[str, StepSpec] = Field(
        min_length=1, description="The steps by name (a subject token, not starting with _)."
    )
    output: str | None = Field(
        None,
        description="CEL expression for the execution's result (default: output of the "
        "step that finished it).",
    )
    stream: StreamSpec = Field(
        default_factory=StreamSpec, description="Retention and durability of its stream."
    )
