"""Checks of a workflow's ``trigger`` section, and the HTTP path templates the bridge matches.

Offline like the rest of ``workflow/``: a path template or a cron expression that cannot work
is a compile error with its line, not a bridge or scheduler failure at run time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

from nanoservice import subjects
from nanoservice.workflow.spec import TriggerSpec

__all__ = ["RESERVED_PATHS", "TICK_ID", "compile_path", "path_params", "trigger_problems"]

RESERVED_PATHS = ("/healthz", "/readyz", "/openapi.json", "/executions", "/ui")
"""Paths the bridge answers itself; no route may start with one."""

TICK_ID = "tick-{name}-{epoch}"
"""The execution id of a schedule's tick: the same on every scheduler replica."""

_PARAM = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LITERAL = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%-]*$")

Problem = tuple[str, tuple[str | int, ...], str | None]
"""(message, location under ``trigger``, hint)."""


def path_params(path: str) -> list[str]:
    """The parameter names of a path template, in order."""
    return _PARAM.findall(path)


def compile_path(path: str) -> re.Pattern[str]:
    """A regex matching the template: each ``{name}`` is one non-empty path segment."""
    out, last = ["^"], 0
    for match in _PARAM.finditer(path):
        out.append(re.escape(path[last : match.start()]))
        out.append(f"(?P<{match.group(1)}>[^/]+)")
        last = match.end()
    out.append(re.escape(path[last:]) + "$")
    return re.compile("".join(out))


def trigger_problems(trigger: TriggerSpec) -> Iterator[Problem]:
    """Every problem of the ``http`` and ``schedules`` entries."""
    seen: set[tuple[str, str]] = set()
    for i, route in enumerate(trigger.http):
        yield from _path_problems(route.path, i)
        key = (route.method, _PARAM.sub("{}", route.path))
        if key in seen:
            yield f"route {route.method} {route.path} is declared twice", ("http", i), None
        seen.add(key)
    names: set[str] = set()
    for i, schedule in enumerate(trigger.schedules):
        where: tuple[str | int, ...] = ("schedules", i)
        if not subjects.is_valid_token(schedule.name) or len(schedule.name) > 40:
            yield (
                f"schedule name '{schedule.name}' must be a subject token of at most 40 characters",
                (*where, "name"),
                None,
            )
        if schedule.name in names:
            yield f"schedule name '{schedule.name}' is used twice", (*where, "name"), None
        names.add(schedule.name)
        if (schedule.cron is None) == (schedule.every is None):
            yield "a schedule needs exactly one of `cron` and `every`", where, None
        elif schedule.cron is not None and (error := cron_error(schedule.cron)):
            yield (
                f"invalid cron expression '{schedule.cron}': {error}",
                (*where, "cron"),
                "five fields: minute hour day-of-month month day-of-week",
            )
        if "tick" in schedule.input or "schedule" in schedule.input:
            yield "`tick` and `schedule` are set by the scheduler", (*where, "input"), None


def cron_error(expression: str) -> str | None:
    """Why a cron expression is invalid, or None."""
    from cronsim import CronSim, CronSimError

    if len(expression.split()) != 5:
        return "it needs 5 fields"
    try:
        next(CronSim(expression, datetime.now(UTC)))
    except (CronSimError, StopIteration) as exc:
        return str(exc) or "it never fires"
    return None


def _path_problems(path: str, i: int) -> Iterator[Problem]:
    where: tuple[str | int, ...] = ("http", i, "path")
    if not path.startswith("/"):
        yield f"path '{path}' must start with /", where, None
        return
    if any(path == p or path.startswith(p + "/") for p in RESERVED_PATHS):
        yield f"path '{path}' is the bridge's own", where, f"reserved: {', '.join(RESERVED_PATHS)}"
    params = path_params(path)
    for name in params:
        if not _NAME.match(name):
            yield f"path parameter '{{{name}}}' must be an identifier", where, None
    if len(set(params)) != len(params):
        yield f"path '{path}' repeats a parameter", where, None
    for segment in path.split("/")[1:]:
        if _PARAM.fullmatch(segment):
            continue
        if "{" in segment or "}" in segment:
            yield f"path segment '{segment}' mixes text and a parameter", where, None
        elif not _LITERAL.match(segment):
            yield f"path segment '{segment}' has characters a URL path cannot", where, None
