"""Reading workflow files safely, remembering the line of every key for error messages.

YAML aliases are refused (a few hundred bytes of nested aliases can expand to megabytes),
files are capped in size and in nesting depth, tags other than YAML's plain types are refused,
and every mapping key and list item keeps its line so that a validation error at
``steps.greet.with.url`` can say ``hello.yaml:12``. Whatever the bytes, reading a file raises
nothing but :class:`WorkflowError`, and each of its problems has a line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from nanoservice.errors import Problem, WorkflowError

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "Document",
    "Location",
    "load_document",
    "parse_document",
]

MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (deeper input would exhaust Python's stack)."""

_PLAIN = "tag:yaml.org,2002:"
_SCALAR_TAGS = {
    _PLAIN + t for t in ("str", "int", "float", "bool", "null", "timestamp", "binary", "merge")
}
_COLLECTION_TAGS = {_PLAIN + "map", _PLAIN + "seq"}

Location = tuple[str | int, ...]


@dataclass
class Document:
    """A parsed workflow file: plain data plus the line of each location in it."""

    data: Any
    file: str
    lines: dict[Location, int] = field(default_factory=dict)

    def line_of(self, loc: Location) -> int | None:
        """The line of ``loc`` or of its nearest ancestor that has one."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), None)

    def problem(
        self, message: str, loc: Location = (), *, step: str | None = None, hint: str | None = None
    ) -> Problem:
        return Problem(message, file=self.file, line=self.line_of(loc), step=step, hint=hint)


def load_document(path: str | Path) -> Document:
    """Read and parse a workflow file (YAML, or JSON by suffix)."""
    path = Path(path)
    file = str(path)
    try:
        size = path.stat().st_size
        data = path.read_bytes() if size <= MAX_FILE_BYTES else b""
    except OSError as exc:
        raise WorkflowError([Problem(f"cannot read file: {exc.strerror}", file=file)]) from None
    if size > MAX_FILE_BYTES:
        raise WorkflowError(
            [Problem(f"file is {size} bytes; the limit is {MAX_FILE_BYTES}", file=file, line=1)]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise WorkflowError(
            [
                Problem(
                    f"not UTF-8: byte 0x{data[exc.start]:02x} ({exc.reason})", file=file, line=line
                )
            ]
        ) from None
    return parse_document(text, file=file)


def parse_document(text: str, *, file: str = "<workflow>") -> Document:
    """Parse YAML (JSON is YAML) text into a :class:`Document`."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise WorkflowError(
            [Problem(f"document is over {MAX_FILE_BYTES} bytes", file=file, line=1)]
        )
    try:
        node = yaml.compose(text, Loader=_NoAliasLoader)
    except yaml.reader.ReaderError as exc:
        # A position in characters, not a line: count the lines before it.
        line = text[: exc.position].count("\n") + 1
        raise WorkflowError(
            [
                Problem(
                    f"malformed YAML: unacceptable character #x{exc.character:04x} "
                    f"(not allowed in YAML)"
                    if isinstance(exc.character, int)
                    else f"malformed YAML: {exc.reason}",
                    file=file,
                    line=line,
                )
            ]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "unreadable"
        raise WorkflowError([Problem(f"malformed YAML: {problem}", file=file, line=line)]) from None
    except yaml.YAMLError as exc:
        raise WorkflowError([Problem(f"malformed YAML: {exc}", file=file, line=1)]) from None
    doc = Document(data=None, file=file)
    if node is None or (
        isinstance(node, ScalarNode) and node.tag == _PLAIN + "null" and not node.value
    ):
        raise WorkflowError([Problem("the file is empty", file=file, line=1)])
    doc.data = _build(node, (), doc)
    return doc


class _NoAliasLoader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                problem="aliases (*name) are not allowed in workflow files",
                problem_mark=event.start_mark,
            )
        if self._depth >= MAX_DEPTH:
            raise yaml.MarkedYAMLError(
                problem=f"nested deeper than {MAX_DEPTH} levels",
                problem_mark=self.peek_event().start_mark,  # type: ignore[no-untyped-call]
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _build(node: Node, loc: Location, doc: Document) -> Any:
    doc.lines.setdefault(loc, node.start_mark.line + 1)
    if not isinstance(node, ScalarNode) and node.tag not in _COLLECTION_TAGS:
        raise WorkflowError([_tag_problem(node, doc)])
    if isinstance(node, MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, doc)
            if key == "<<":
                raise WorkflowError(
                    [
                        Problem(
                            "merge keys (<<) are not allowed",
                            file=doc.file,
                            line=key_node.start_mark.line + 1,
                        )
                    ]
                )
            if not isinstance(key, str | int | float | bool) or key is None:
                raise WorkflowError(
                    [
                        Problem(
                            "mapping keys must be plain strings",
                            file=doc.file,
                            line=key_node.start_mark.line + 1,
                        )
                    ]
                )
            key = str(key)
            if key in result:
                raise WorkflowError(
                    [
                        Problem(
                            f"duplicate key '{key}'",
                            file=doc.file,
                            line=key_node.start_mark.line + 1,
                        )
                    ]
                )
            doc.lines[(*loc, key)] = key_node.start_mark.line + 1
            result[key] = _build(value_node, (*loc, key), doc)
        return result
    if isinstance(node, SequenceNode):
        return [_build(item, (*loc, i), doc) for i, item in enumerate(node.value)]
    return _scalar(node, doc)


def _scalar(node: Node, doc: Document) -> Any:
    if not isinstance(node, ScalarNode):
        raise WorkflowError(
            [
                Problem(
                    "mapping keys must be plain strings",
                    file=doc.file,
                    line=node.start_mark.line + 1,
                )
            ]
        )
    if node.tag == _PLAIN + "value":  # a plain `=`, which PyYAML cannot construct
        return node.value
    if node.tag not in _SCALAR_TAGS:
        raise WorkflowError([_tag_problem(node, doc)])
    loader = _NoAliasLoader("")
    try:
        value = loader.construct_object(node, deep=True)
    except Exception:  # PyYAML's constructors fail with ValueError, AttributeError, binascii...
        raise WorkflowError(
            [
                Problem(
                    f"cannot read {node.value!r} as {node.tag}",
                    file=doc.file,
                    line=node.start_mark.line + 1,
                )
            ]
        ) from None
    if isinstance(value, str) and not _is_utf8(value):
        raise WorkflowError(
            [
                Problem(
                    f"string {value!r} is not valid UTF-8 (a lone surrogate escape, as \\ud800)",
                    file=doc.file,
                    line=node.start_mark.line + 1,
                )
            ]
        )
    if isinstance(value, bytes | set) or type(value).__module__ == "datetime":
        # Keep data JSON-shaped: timestamps and binary stay strings.
        return node.value if not isinstance(value, bytes) else json.dumps(node.value)
    return value


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _tag_problem(node: Node, doc: Document) -> Problem:
    return Problem(
        f"tag '{node.tag}' is not allowed",
        file=doc.file,
        line=node.start_mark.line + 1,
        hint="workflow files hold plain mappings, lists, strings, numbers and booleans",
    )
