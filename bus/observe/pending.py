"""Consumer backlog, sampled from the JetStream API: how many messages each step's durable
consumer has not delivered yet (``num_pending``) and has delivered but not had acked
(``num_ack_pending``). Every replica of a step samples the same consumer, so dashboards
take ``max by (workflow, step)``.

Exported: ``nano_consumer_pending_messages{workflow,step}`` and
``nano_consumer_ack_pending_messages{workflow,step}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from nanoservice import subjects
from nanoservice.workflow.table import RoutingTable, StepRoute

__all__ = ["ConsumerInfoSource", "PendingSampler"]

log = logging.getLogger("nanoservice.observe")


class ConsumerInfoSource(Protocol):
    """What the sampler needs of JetStream (nats-py's ``JetStreamContext`` has it)."""

    async def consumer_info(self, stream: str, consumer: str) -> Any: ...


class PendingSampler(Collector):
    """Samples the consumers of ``steps`` every ``interval`` seconds while running."""

    def __init__(
        self,
        js: ConsumerInfoSource,
        steps: Sequence[tuple[RoutingTable, StepRoute]],
        interval: float = 5.0,
    ) -> None:
        self.js = js
        self.interval = interval
        self.consumers = sorted(
            {(t.workflow, s.name, subjects.stream_name(t.workflow), s.consumer) for t, s in steps}
        )
        self.values: dict[tuple[str, str], tuple[int, int]] = {}
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> None:
        """Read every consumer's state once (a consumer that cannot be read is skipped)."""
        for workflow, step, stream, consumer in self.consumers:
            try:
                info = await asyncio.wait_for(self.js.consumer_info(stream, consumer), 5)
            except Exception as exc:
                log.debug("consumer %s/%s not sampled: %s", stream, consumer, exc)
                continue
            self.values[(workflow, step)] = (
                int(info.num_pending or 0),
                int(info.num_ack_pending or 0),
            )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval)

    def collect(self) -> Iterator[Any]:
        labels = ["workflow", "step"]
        pending = GaugeMetricFamily(
            "nano_consumer_pending_messages",
            "Messages a step's consumer has not delivered yet (sampled).",
            labels=labels,
        )
        acks = GaugeMetricFamily(
            "nano_consumer_ack_pending_messages",
            "Messages delivered to a step and not acked yet (sampled).",
            labels=labels,
        )
        for (workflow, step), (waiting, unacked) in sorted(self.values.items()):
            pending.add_metric([workflow, step], waiting)
            acks.add_metric([workflow, step], unacked)
        yield pending
        yield acks

    def describe(self) -> Iterator[Any]:
        return iter(())
