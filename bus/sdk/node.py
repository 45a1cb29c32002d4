"""The node SDK: what a node author writes. Nodes never see NATS.

Two ways to write one::

    class Greet(Node[GreetIn, GreetOut, GreetConfig]):
        name = "greet"
        Config = GreetConfig

        async def handle(self, ctx: Context, input: GreetIn) -> GreetOut:
            return GreetOut(message=f"{self.config.greeting}, {input.name}")

    @node("shout")
    async def shout(ctx: Context, input: dict[str, Any]) -> dict[str, Any]:
        return {k: str(v).upper() for k, v in input.items()}

A plain ``def`` (function or ``handle``) runs in a worker thread: blocking code belongs
there, never in an ``async def``, which runs on the host's event loop.
Input and output types come from ``handle``'s annotations and are validated with pydantic;
``dict``/``Any`` skip validation. A node picks a branch with ``ctx.choose("route")`` or by
returning ``Routed(output, "route")``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, TypeAdapter
from pydantic_core import PydanticSerializationError

from nanoservice.sdk.output import OutputError, json_output
from nanoservice.workflow.expr import Expression

__all__ = [
    "Context",
    "NoConfig",
    "Node",
    "NodeInstance",
    "NodeType",
    "Routed",
    "as_node_type",
    "node",
]

InT = TypeVar("InT")
OutT = TypeVar("OutT")
CfgT = TypeVar("CfgT", bound=BaseModel)

logger = logging.getLogger("nanoservice.sdk.node")


class NoConfig(BaseModel):
    """The config of a node that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class Routed(Generic[OutT]):
    """An output together with the route the node chose."""

    output: OutT
    route: str


class Context:
    """What a node sees of the execution it serves."""

    __slots__ = (
        "_heartbeat",
        "_log",
        "attempt",
        "execution_id",
        "routes",
        "scope",
        "step",
        "updated_vars",
        "workflow",
    )

    def __init__(
        self,
        *,
        execution_id: str,
        workflow: str,
        step: str,
        attempt: int = 1,
        scope: Mapping[str, Any] | None = None,
        heartbeat: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.workflow = workflow
        self.step = step
        self.attempt = attempt
        self.scope: Mapping[str, Any] = scope or {}
        self.routes: list[str] = []
        self.updated_vars: dict[str, Any] | None = None
        self._heartbeat = heartbeat
        self._log: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that tags records with the execution, workflow and step."""
        if self._log is None:
            self._log = logging.LoggerAdapter(
                logger,
                {"execution": self.execution_id, "workflow": self.workflow, "step": self.step},
            )
        return self._log

    def choose(self, *routes: str) -> None:
        """Send this step's output down the named ``routes`` (several: multi-choice)."""
        self.routes.extend(routes)

    @property
    def route(self) -> str | None:
        """The first route chosen so far, if any."""
        return self.routes[0] if self.routes else None

    def evaluate(self, expression: Expression) -> Any:
        """Evaluate a config expression against this execution's data."""
        return expression.evaluate(self.scope)

    def set_var(self, name: str, value: Any) -> None:
        """Set a workflow variable for the steps that follow."""
        if self.updated_vars is None:
            self.updated_vars = {}
        self.updated_vars[name] = value

    async def heartbeat(self) -> None:
        """Tell the server this step is still working (long steps call it periodically)."""
        if self._heartbeat is not None:
            await self._heartbeat()


class NodeInstance:
    """A configured node, ready to handle messages. Hosts build one per step."""

    async def setup(self) -> None:
        """Acquire resources (clients, pools) before the first message."""

    async def close(self) -> None:
        """Release what :meth:`setup` acquired."""

    async def handle(self, ctx: Context, input: Any) -> Any:
        raise NotImplementedError


class Node(NodeInstance, Generic[InT, OutT, CfgT]):
    """Base class of class-based nodes: set ``name`` and ``Config``, implement ``handle``."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]] = NoConfig
    description: ClassVar[str] = ""
    pure: ClassVar[bool] = False
    """Set True if ``handle`` never waits on I/O or timers (hosts may run it inline)."""
    override: ClassVar[bool] = False
    """Set True to replace, on purpose, a built-in or installed node of the same name."""

    def __init__(self, config: CfgT) -> None:
        self.config = config

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handle = cls.__dict__.get("handle")
        if handle is not None and not inspect.iscoroutinefunction(handle):
            if cls.pure:
                raise TypeError(f"{cls.__qualname__}: a pure node needs `async def handle`")
            setattr(cls, "handle", _in_thread(handle))  # noqa: B010 (mypy: a method)

    def handle(self, ctx: Context, input: InT) -> Any:
        """Handle one input: ``async def`` runs on the event loop, plain ``def`` in a worker
        thread (for blocking code); returns the output or ``Routed(output, route)``."""
        raise NotImplementedError


@dataclass(frozen=True)
class NodeType:
    """A registered node: name, typed config/input/output and a factory."""

    name: str
    create: Callable[[BaseModel], NodeInstance]
    config_model: type[BaseModel] = NoConfig
    input_type: Any = Any
    output_type: Any = Any
    description: str = ""
    pure: bool = False
    """The node never waits on I/O or timers: hosts may run it inline, without a task."""
    override: bool = False
    """Replaces a node of the same name from another origin on purpose (see Registry.discover)."""
    input_adapter: TypeAdapter[Any] | None = field(default=None, compare=False, repr=False)
    output_adapter: TypeAdapter[Any] | None = field(default=None, compare=False, repr=False)

    def configure(self, config: Mapping[str, Any]) -> BaseModel:
        """Validate a step's ``with:`` mapping into the config model."""
        return self.config_model.model_validate(dict(config))

    def build(self, config: Mapping[str, Any]) -> NodeInstance:
        return self.create(self.configure(config))

    def validate_input(self, value: Any) -> Any:
        return value if self.input_adapter is None else self.input_adapter.validate_python(value)

    def dump_output(self, value: Any) -> Any:
        """The output as JSON; :class:`~nanoservice.sdk.output.OutputError` if it is not JSON
        (NaN, a set, bytes...: see docs/authoring.md), naming where, never retried."""
        if self.output_adapter is not None:
            try:
                value = self.output_adapter.dump_python(value, mode="json")
            except PydanticSerializationError as exc:
                raise OutputError(f"output: {exc}") from None
        return json_output(value)


def _adapter(annotation: Any) -> TypeAdapter[Any] | None:
    """A validating adapter, or None where the type is free-form JSON (the fast path)."""
    if annotation in (Any, object, dict, inspect.Parameter.empty) or annotation == dict[str, Any]:
        return None
    return TypeAdapter(annotation)


def _make_type(
    name: str,
    create: Callable[[BaseModel], NodeInstance],
    config: type[BaseModel],
    handle: Callable[..., Any],
    description: str,
    pure: bool = False,
    override: bool = False,
) -> NodeType:
    hints = get_type_hints(handle)
    params = [p for p in inspect.signature(handle).parameters if p not in ("self",)]
    input_type = hints.get(params[1], Any) if len(params) > 1 else Any
    output_type = hints.get("return", Any)
    if getattr(output_type, "__origin__", None) is Routed or output_type is Routed:
        args = getattr(output_type, "__args__", (Any,))
        output_type = args[0]
    elif getattr(output_type, "__args__", None):
        # OutT | Routed[OutT]: keep the non-Routed member.
        members = [
            a
            for a in output_type.__args__
            if getattr(a, "__origin__", None) is not Routed and a is not Routed
        ]
        if len(members) == 1 and len(members) != len(output_type.__args__):
            output_type = members[0]
    return NodeType(
        name=name,
        create=create,
        config_model=config,
        input_type=input_type,
        output_type=output_type,
        description=description,
        pure=pure,
        override=override,
        input_adapter=_adapter(input_type),
        output_adapter=_adapter(output_type),
    )


class _FunctionNode(NodeInstance):
    __slots__ = ("config", "fn", "takes_config")

    def __init__(self, fn: Callable[..., Any], config: BaseModel, takes_config: bool) -> None:
        self.fn = fn
        self.config = config
        self.takes_config = takes_config

    def handle(self, ctx: Context, input: Any) -> Any:
        # Returns the function's own coroutine: no extra coroutine frame per call.
        if self.takes_config:
            return self.fn(ctx, input, self.config)
        return self.fn(ctx, input)


def _in_thread(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``fn`` as a coroutine function that runs it in the loop's default (bounded) executor."""

    @functools.wraps(fn)
    async def threaded(*args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    return threaded


def node(
    name: str | None = None,
    *,
    config: type[BaseModel] = NoConfig,
    description: str | None = None,
    pure: bool = False,
    override: bool = False,
) -> Callable[[Callable[..., Any]], NodeType]:
    """Turn ``[async] def f(ctx, input[, config])`` into a registrable :class:`NodeType`.

    An ``async def`` runs on the host's event loop; a plain ``def`` runs in a worker thread,
    so blocking code (``time.sleep``, blocking clients, heavy computation) cannot freeze
    the host.

    ``pure=True`` promises the function never awaits I/O, sleeps or timeouts (it computes
    and returns): hosts then run it inline in the consumer, without a task per message.
    ``override=True`` lets it replace a built-in or installed node of the same name.
    """

    def wrap(fn: Callable[..., Any]) -> NodeType:
        if not callable(fn) or inspect.isclass(fn):
            raise TypeError(f"@node needs a function, got {fn!r}")
        run = fn
        if not inspect.iscoroutinefunction(fn):
            if pure:
                raise TypeError(
                    f"@node({name or fn.__name__!r}, pure=True) needs an async function: "
                    "a plain def runs in a worker thread, which a pure node never needs"
                )
            run = _in_thread(fn)
        takes_config = len(inspect.signature(fn).parameters) >= 3
        return _make_type(
            name or fn.__name__,
            lambda cfg: _FunctionNode(run, cfg, takes_config),
            config,
            fn,
            description if description is not None else inspect.getdoc(fn) or "",
            pure,
            override,
        )

    return wrap


def as_node_type(obj: Any) -> NodeType:
    """Accept a :class:`NodeType` or a :class:`Node` subclass and return a NodeType."""
    if isinstance(obj, NodeType):
        return obj
    if inspect.isclass(obj) and issubclass(obj, Node):
        if not getattr(obj, "name", None):
            raise TypeError(f"node class {obj.__qualname__} needs a `name`")
        cls = obj
        return _make_type(
            cls.name,
            lambda cfg: cls(cfg),
            cls.Config,
            cls.handle,
            cls.description or inspect.getdoc(cls) or "",
            cls.pure,
            cls.override,
        )
    raise TypeError(f"not a node: {obj!r} (use a Node subclass or the @node decorator)")
