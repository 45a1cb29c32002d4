"""The console's pages, fragments and event stream (routes relative to the mount).

Read-only pages are plain HTML (they work with JavaScript off); fragments are the parts
htmx refreshes; ``/events`` is the server-sent event stream of the execution list. A
framework error (unknown workflow or execution, a dead letter gone) is a one-line page;
NATS not answering is a 503 saying so.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from nats.errors import Error as NatsError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from nanoservice.console.app import Console, NatsUnavailable
from nanoservice.console.hub import OUTCOMES, matches
from nanoservice.console.render import MAX_PAYLOAD, graph_markup, graph_svg
from nanoservice.errors import NanoError
from nanoservice.inspect import dlq
from nanoservice.inspect.trace import StepRun, Trace, trace_execution

__all__ = ["routes"]

PERIODS = [("300", "5 minutes"), ("3600", "1 hour"), ("86400", "1 day")]
LIST_LIMIT = 200
KEEPALIVE = 15.0

Handler = Callable[[Request], Awaitable[Response]]


def routes(console: Console) -> list[BaseRoute]:
    pages = _Pages(console)
    static = Path(__file__).resolve().parent / "static"
    return [
        Route("/", pages.workflows),
        Route("/fragments/workflows", pages.workflow_rows),
        Route("/workflows/{workflow}", pages.workflow),
        Route("/workflows/{workflow}/graph.svg", pages.graph),
        Route("/fragments/workflows/{workflow}/steps", pages.step_rows),
        Route("/executions", pages.executions),
        Route("/events", pages.events),
        Route("/executions/{workflow}/{execution}", pages.execution),
        Route("/dead-letters", pages.dead_letters),
        Route("/dead-letters/{workflow}/{seq:int}", pages.dead_letter),
        Route("/dead-letters/{workflow}/{seq:int}/retry", pages.confirm_retry),
        Route("/dead-letters/{workflow}/{seq:int}/retry", pages.retry, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=static), name="static"),
    ]


def _safe(handler: Handler) -> Handler:
    """Framework and NATS errors become a one-line page instead of a traceback."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        pages: _Pages = handler.__self__  # type: ignore[attr-defined]
        try:
            return await handler(request)
        except NanoError as exc:
            return pages.console.render(
                request, "error.html", 404, title="Not found", message=str(exc)
            )
        except NatsUnavailable as exc:
            return pages.console.render(
                request, "error.html", 503, title="NATS unavailable", message=str(exc)
            )
        except (NatsError, TimeoutError, OSError) as exc:
            text = str(exc).removeprefix("nats: ") or type(exc).__name__
            return pages.console.render(
                request, "error.html", 503, title="NATS unavailable", message=f"NATS: {text}"
            )

    return wrapped


class _Pages:
    def __init__(self, console: Console) -> None:
        self.console = console
        for name in (
            "workflows",
            "workflow_rows",
            "workflow",
            "step_rows",
            "executions",
            "execution",
            "dead_letters",
            "dead_letter",
            "confirm_retry",
            "retry",
        ):
            setattr(self, name, _safe(getattr(self, name)))

    # -- workflows ------------------------------------------------------------------

    async def _workflow_rows(self) -> list[dict[str, Any]]:
        status = await self.console.status()
        rows = []
        for wf in status.workflows:
            rates = [c.rate for c in wf.steps if c.rate is not None]
            rows.append(
                {
                    "workflow": wf.workflow,
                    "revision": wf.revision,
                    "steps": len([c for c in wf.steps if not c.step.endswith("(timers)")]),
                    "rate": round(sum(rates), 2) if rates else None,
                    "dead_letters": wf.dead_letters,
                    "backlog": sum(c.pending + c.ack_pending for c in wf.steps),
                    "missing": wf.missing,
                }
            )
        return rows

    async def workflows(self, request: Request) -> Response:
        rows = await self._workflow_rows()
        return self.console.render(
            request, "workflows.html", title="Workflows", nav="workflows", rows=rows
        )

    async def workflow_rows(self, request: Request) -> Response:
        rows = await self._workflow_rows()
        return self.console.render(request, "_workflow_rows.html", rows=rows)

    async def _table(self, name: str) -> Any:
        tables = await self.console.tables()
        if name not in tables:
            known = ", ".join(sorted(tables)) or "none"
            raise NanoError(f"no workflow '{name}' on this server (workflows: {known})")
        return tables[name]

    async def _steps(self, name: str) -> list[Any]:
        status = await self.console.status()
        return next((wf.steps for wf in status.workflows if wf.workflow == name), [])

    async def workflow(self, request: Request) -> Response:
        name = request.path_params["workflow"]
        table = await self._table(name)
        return self.console.render(
            request,
            "workflow.html",
            title=f"Workflow {name}",
            nav="workflows",
            table=table,
            workflow=name,
            graph=graph_markup(table),
            steps=await self._steps(name),
        )

    async def graph(self, request: Request) -> Response:
        table = await self._table(request.path_params["workflow"])
        return Response(graph_svg(table), media_type="image/svg+xml")

    async def step_rows(self, request: Request) -> Response:
        name = request.path_params["workflow"]
        await self._table(name)
        return self.console.render(
            request, "_step_rows.html", workflow=name, steps=await self._steps(name)
        )

    # -- executions -----------------------------------------------------------------

    @staticmethod
    def _filters(request: Request) -> dict[str, Any]:
        query = request.query_params
        outcome = query.get("outcome") or None
        since = query.get("since") or ""
        return {
            "workflow": query.get("workflow") or None,
            "outcome": outcome if outcome in OUTCOMES else None,
            "since": time.time() - float(since) if since.isdigit() else None,
        }

    async def executions(self, request: Request) -> Response:
        filters = self._filters(request)
        found = self.console.hub.recent(**filters, limit=LIST_LIMIT)
        query = urlencode({k: v for k, v in request.query_params.items() if v})
        return self.console.render(
            request,
            "executions.html",
            title="Executions",
            nav="executions",
            executions=found,
            workflows=sorted(await self.console.tables()),
            outcomes=OUTCOMES,
            periods=PERIODS,
            workflow=filters["workflow"],
            outcome=filters["outcome"],
            since=request.query_params.get("since", ""),
            query=query,
            limit=LIST_LIMIT,
            keep=self.console.hub.keep,
        )

    async def events(self, request: Request) -> Response:
        """``event: execution`` with ``{"id", "html"}`` (the row) per changed execution."""
        filters = self._filters(request)
        base = request.scope.get("root_path", "").rstrip("/")
        template = self.console.env.get_template("_execution_row.html")

        async def stream() -> AsyncIterator[str]:
            async with self.console.hub.updates() as client:
                yield "retry: 2000\n: connected\n\n"
                while True:
                    try:
                        summary = await asyncio.wait_for(client.queue.get(), KEEPALIVE)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if not matches(
                        summary, workflow=filters["workflow"], outcome=filters["outcome"]
                    ):
                        continue
                    html = template.render(base=base, s=summary).strip()
                    data = json.dumps(
                        {"id": f"{summary.workflow}.{summary.execution}", "html": html}
                    )
                    yield f"event: execution\ndata: {data}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def execution(self, request: Request) -> Response:
        workflow = request.path_params["workflow"]
        execution = request.path_params["execution"]
        tables = await self.console.tables()
        self.console.need_nats()
        trace = await trace_execution(self.console.nc, tables, workflow, execution)
        original = trace.replay_of.split(".", 1) if trace.replay_of else None
        return self.console.render(
            request,
            "trace.html",
            title=f"Execution {execution}",
            nav="executions",
            trace=trace,
            bars=_bars(trace),
            replay_of=original if original and len(original) == 2 else None,
            replays=self.console.hub.replays_of(workflow, execution),
            dead_letter_workflows={workflow} if trace.status == "failed" else set(),
            max_payload=MAX_PAYLOAD,
        )

    # -- dead letters ---------------------------------------------------------------

    async def dead_letters(self, request: Request) -> Response:
        tables = await self.console.tables()
        workflow = request.query_params.get("workflow") or None
        execution = request.query_params.get("execution") or None
        if workflow is not None:
            await self._table(workflow)
        self.console.need_nats()
        letters = await dlq.dead_letters(
            self.console.nc, tables, [workflow] if workflow else None, execution=execution
        )
        return self.console.render(
            request,
            "dead_letters.html",
            title="Dead letters",
            nav="dead-letters",
            letters=letters[:LIST_LIMIT],
            total=len(letters),
            more=len(letters) > LIST_LIMIT,
            workflows=sorted(tables),
            workflow=workflow,
        )

    async def _letter(self, request: Request) -> dlq.DeadLetterInfo:
        workflow, seq = request.path_params["workflow"], request.path_params["seq"]
        await self._table(workflow)
        self.console.need_nats()
        letters = await dlq.dead_letters(self.console.nc, await self.console.tables(), [workflow])
        for letter in letters:
            if letter.seq == seq:
                return letter
        raise NanoError(
            f"workflow '{workflow}' has no dead letter at seq {seq} (retried or purged already?)"
        )

    async def dead_letter(self, request: Request) -> Response:
        letter = await self._letter(request)
        return self.console.render(
            request,
            "dead_letter.html",
            title=f"Dead letter {letter.seq}",
            nav="dead-letters",
            d=letter,
        )

    async def confirm_retry(self, request: Request) -> Response:
        letter = await self._letter(request)
        table = await self._table(letter.workflow)
        return self.console.render(
            request,
            "confirm_retry.html",
            title="Retry a dead letter?",
            nav="dead-letters",
            d=letter,
            revision=table.revision,
            confirm=self.console.guard.form_token(_action(letter.workflow, letter.seq)),
        )

    async def retry(self, request: Request) -> Response:
        workflow, seq = request.path_params["workflow"], request.path_params["seq"]
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("confirm") or [""])[0]
        refused = self.console.guard.allows(request, _action(workflow, seq), token)
        if refused is not None:
            return self.console.render(request, "error.html", 403, title="Refused", message=refused)
        letter = await self._letter(request)
        (done,) = await dlq.retry(self.console.nc, await self.console.tables(), [letter])
        return self.console.render(
            request, "retried.html", title="Dead letter retried", nav="dead-letters", r=done
        )


def _action(workflow: str, seq: int) -> str:
    return f"retry:{workflow}:{seq}"


def _bars(trace: Trace) -> list[dict[str, Any]]:
    """Each step run's bar on a 0..1000 scale from the first start to the last end."""
    runs: list[StepRun] = trace.steps
    if not runs:
        return []
    start = min(r.start for r in runs)
    end = max([r.end or r.start for r in runs] + [trace.ended or start])
    span = max(end - start, 1e-9)
    bars = []
    for run in runs:
        x = (run.start - start) / span * 1000
        width = ((run.end or end) - run.start) / span * 1000
        bars.append({"run": run, "x": round(x, 1), "width": round(max(width, 2.0), 1)})
    return bars
