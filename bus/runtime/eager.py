"""Running coroutines eagerly: most of the engine's work never waits, so it need not pay
for a task, or a timer, per message.

Python 3.12 has an eager task factory; on 3.11 the same is done here by hand: start the
coroutine with ``send(None)`` and, only if it suspends, let a task (or the awaiting
coroutine) drive the rest with :func:`resume`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["resume", "run_with_timeout", "start_eagerly"]

log = logging.getLogger("nanoservice.runtime.eager")


def start_eagerly(
    coro: Coroutine[Any, Any, None], on_task: Callable[[asyncio.Task[None]], None]
) -> bool:
    """Run ``coro`` now, inside the caller; if it suspends, finish it in a new task.

    Returns True if it finished at once. The part before the first suspension runs in the
    *caller's* task: it must not use task-bound features (``asyncio.timeout``,
    ``current_task``) before it has suspended once. It runs in a copy of the caller's
    context, and so does the task that finishes it, so context variables behave as they do
    in a task of its own (set, reset, nothing leaks into the caller).
    """
    context = contextvars.copy_context()
    try:
        waiting_on = context.run(coro.send, None)
    except StopIteration:
        return True
    except Exception:
        log.exception("eagerly started coroutine failed")
        return True
    task = asyncio.get_running_loop().create_task(_finish(coro, waiting_on), context=context)
    on_task(task)
    return False


async def _finish(coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    await resume(coro, waiting_on)


async def run_with_timeout(coro: Coroutine[Any, Any, Any], seconds: float) -> Any:
    """Await ``coro`` under a timeout, arming the timer only if it actually has to wait.

    Most nodes finish without suspending; a timer armed and cancelled for each of them costs
    more than the node. So the coroutine is started here, and only if it suspends is the
    rest run under ``asyncio.timeout``.
    """
    try:
        waiting_on = coro.send(None)
    except StopIteration as done:
        return done.value
    # Step once through the event loop before arming the timer: a caller that started this
    # eagerly from another task's callback (see `start_eagerly`) is then inside its own
    # task, which is the one the timeout must cancel.
    await asyncio.sleep(0)
    async with asyncio.timeout(seconds):
        return await resume(coro, waiting_on)


@types.coroutine
def resume(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Generator[Any, Any, Any]:
    """Drive an already started coroutine to its end from inside the awaiting task."""
    while True:
        try:
            value = yield waiting_on
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # cancellation or timeout thrown in by the task
            try:
                waiting_on = coro.throw(exc)
            except StopIteration as done:
                return done.value
            continue
        try:
            waiting_on = coro.send(value)
        except StopIteration as done:
            return done.value
