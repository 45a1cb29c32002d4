"""One step across table revisions: which pipeline a delivery belongs to.

Every message carries the revision of the table it was sent under (``Nano-Revision``). New
executions (triggers, which carry none) start on the live revision; a message of an older
revision the host still has runs on that revision, so an execution finishes on the revision
it started on; a message of a revision this host does not have waits (another host, or
this one once its table watch catches up, takes it) and is dead-lettered with the reason
once its tries are spent, never run on the wrong table.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from nanoservice import subjects
from nanoservice.runtime.decision import DeadLetter, Wait
from nanoservice.runtime.envelope import ErrorInfo
from nanoservice.runtime.pipeline import StepPipeline
from nanoservice.types import REVISION, Delivery

__all__ = ["StepRevisions"]

log = logging.getLogger("nanoservice.host")


class StepRevisions:
    """The pipelines of one step, by revision; the consumer's handler dispatches here."""

    def __init__(self, live: StepPipeline) -> None:
        self.live = live
        self.by_revision: dict[str, StepPipeline] = {live.step.revision: live}

    @property
    def inline(self) -> bool:
        return self.live.inline

    def add(self, pipeline: StepPipeline) -> None:
        """Make ``pipeline`` (a new revision of this step) the live one; keep the others."""
        self.by_revision[pipeline.step.revision] = pipeline
        self.live = pipeline

    def handle(self, delivery: Delivery) -> Coroutine[Any, Any, None]:
        """The coroutine that handles ``delivery`` on the pipeline of its revision."""
        revision = delivery.headers.get(REVISION)
        live = self.live
        if revision is None or revision == live.step.revision:
            return live.handler(delivery)
        pipeline = self.by_revision.get(revision)
        if pipeline is not None:
            return pipeline.handler(delivery)
        return self._unknown(delivery, revision)

    async def _unknown(self, delivery: Delivery, revision: str) -> None:
        live = self.live
        step = live.step
        if delivery.delivered < step.step.retry.max_attempts:
            log.warning(
                "%s/%s: message of revision %s, which this host does not run (live: %s); "
                "leaving it to a host that does",
                step.workflow,
                step.name,
                revision,
                step.revision,
            )
            await live.settler.settle(delivery, Wait(1.0))
            return
        error = ErrorInfo(
            "UnknownRevision",
            f"no host ran revision {revision} of workflow '{step.workflow}' "
            f"(live: {step.revision})",
        )
        execution = subjects.execution_of(delivery.subject)
        await live.settler.settle(delivery, DeadLetter(error, None, execution), execution)

    def pipelines(self) -> list[StepPipeline]:
        return list(self.by_revision.values())
