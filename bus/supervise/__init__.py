"""Process supervision for ``nano up``: process specs, the supervisor (restarts with
backoff, log prefixes, limits), its state file for ``nano ps``, and the autoscaler."""

from __future__ import annotations

from nanoservice.supervise.spec import Backoff, Limits, ProcessSpec
from nanoservice.supervise.supervisor import Replica, Supervisor

__all__ = ["Backoff", "Limits", "ProcessSpec", "Replica", "Supervisor"]
