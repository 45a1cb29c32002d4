"""From a checked workflow spec to the routing table the hosts execute."""

from __future__ import annotations

import hashlib
import json

from nanoservice import subjects
from nanoservice.workflow.spec import WorkflowSpec
from nanoservice.workflow.table import (
    CallRoute,
    ForEachRoute,
    HttpRoute,
    JoinRoute,
    LoopRoute,
    RetryRoute,
    Route,
    RoutingTable,
    ScheduleRoute,
    StepRoute,
    StreamSettings,
)

__all__ = ["INPUT", "build_table"]

INPUT = "$input"
"""Stands for the trigger payload in the sets of data later steps read."""


def build_table(
    spec: WorkflowSpec, source: str, start: list[str], keep: dict[str, frozenset[str] | None]
) -> RoutingTable:
    """The routing table of a checked spec; ``keep``: the step outputs each step carries on."""
    wf = spec.name
    steps: dict[str, StepRoute] = {}
    start_prefix = f"{subjects.PREFIX}.{wf}.{subjects.START}"
    for name, step in spec.steps.items():
        filters = [subjects.step_filter(wf, name)]
        if name in start:
            filters += [start_prefix + ".*", *spec.trigger.subjects]
        kept = keep[name]
        steps[name] = StepRoute(
            name=name,
            node=step.node,
            config=dict(step.with_),
            subject=subjects.step_prefix(wf, name),
            consumer=subjects.consumer_name(name),
            filter_subjects=filters,
            input=step.input,
            next=list(step.next),
            routes={k: Route(to=list(r.to), when=r.when) for k, r in step.routes.items()},
            choose=step.choose,
            default=list(step.default),
            on_error=list(step.on_error),
            join=None
            if step.join is None
            else JoinRoute(
                steps=list(step.join.steps),
                mode=step.join.mode,
                timeout=step.join.timeout,
                on_timeout=list(step.join.on_timeout),
            ),
            loop=None
            if step.loop is None
            else LoopRoute(
                until=step.loop.until,
                max=step.loop.max,
                back_to=step.loop.back_to or name,
                on_max=step.loop.on_max,
            ),
            call=None
            if step.call is None
            else CallRoute(workflow=step.call.workflow, wait=step.call.wait),
            for_each=None
            if step.for_each is None
            else ForEachRoute(
                items=step.for_each.items,
                concurrency=step.for_each.concurrency,
                on_item_error=step.for_each.on_item_error,
            ),
            set_vars=dict(step.set_vars),
            retry=RetryRoute(
                max_attempts=step.retry.max_attempts,
                backoff=list(step.retry.backoff),
                retry_on=step.retry.retry_on,
            ),
            timeout=step.timeout,
            # Hosts send in-progress heartbeats for long steps, so this need not cover
            # the whole timeout: it bounds how soon a crashed host's messages come back.
            ack_wait=step.ack_wait or min(30.0, max(2.0, 2 * step.timeout)),
            concurrency=step.concurrency,
            keep=None if kept is None else sorted(kept - {INPUT}),
            keep_input=kept is None or INPUT in kept,
            runtime=step.runtime,
        )
    stream = StreamSettings(
        name=subjects.stream_name(wf),
        subjects=[subjects.workflow_filter(wf), *spec.trigger.subjects],
        max_age=spec.stream.max_age,
        max_bytes=spec.stream.max_bytes,
        replicas=spec.stream.replicas,
        # JetStream refuses a dedup window longer than the retention.
        duplicate_window=min(spec.stream.duplicate_window, spec.stream.max_age),
    )
    return RoutingTable(
        workflow=wf,
        revision=_revision(spec),
        source=source,
        stream=stream,
        start=start,
        start_subject=start_prefix,
        triggers=list(spec.trigger.subjects),
        http=[
            HttpRoute(
                method=h.method,
                path=h.path,
                mode=h.mode,
                timeout=h.timeout,
                headers=list(h.headers),
                response=h.response,
                output_schema=h.output_schema,
            )
            for h in spec.trigger.http
        ],
        schedules=[
            ScheduleRoute(
                name=s.name,
                cron=s.cron,
                every=s.every,
                missed=s.missed,
                max_catch_up=s.max_catch_up,
                input=dict(s.input),
            )
            for s in spec.trigger.schedules
        ],
        input_schema=spec.input,
        vars=dict(spec.vars),
        output=spec.output,
        steps=steps,
    )


def _revision(spec: WorkflowSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
