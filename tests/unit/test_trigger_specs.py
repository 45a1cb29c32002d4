"""The trigger section compiles into the table, and every mistake in it is a problem with
its line; the bridge's input rules, offline."""

from __future__ import annotations

import jsonschema
import pytest

from nanoservice.errors import WorkflowError
from nanoservice.sdk.registry import Registry
from nanoservice.triggers.inputs import BadInput, build_input, schema_problems
from nanoservice.triggers.routes import Routes
from nanoservice.workflow.compiler import compile_text
from nanoservice.workflow.table import RoutingTable

REGISTRY = Registry.discover()


def _compile(trigger: str) -> RoutingTable:
    return compile_text(
        f"name: t\ntrigger:\n{trigger}\nsteps:\n  a: {{node: log}}\n", REGISTRY, file="t.yaml"
    )


def test_http_and_schedules_reach_the_table() -> None:
    table = _compile(
        '  http: {path: "/a/{id}", method: GET, mode: async}\n'
        '  schedules: [{cron: "*/5 * * * *"}, {name: fast, every: 2, missed: catch_up}]'
    )
    assert [(r.method, r.path, r.mode) for r in table.http] == [("GET", "/a/{id}", "async")]
    assert [(s.name, s.cron, s.every) for s in table.schedules] == [
        ("tick", "*/5 * * * *", None),
        ("fast", None, 2.0),
    ]


@pytest.mark.parametrize(
    ("trigger", "says"),
    [
        ("  http: {path: nope}", "t.yaml:3: path 'nope' must start with /"),
        ("  http: {path: /healthz}", "path '/healthz' is the bridge's own"),
        ('  http: {path: "/a/{1x}"}', "path parameter '{1x}' must be an identifier"),
        ('  http: {path: "/a/{id}/{id}"}', "repeats a parameter"),
        ('  http: {path: "/a/x{id}"}', "mixes text and a parameter"),
        ("  http: [{path: /a}, {path: /a}]", "route POST /a is declared twice"),
        ("  schedules: [{every: 5, cron: '* * * * *'}]", "exactly one of `cron` and `every`"),
        ("  schedules: [{cron: '61 * * * *'}]", "invalid cron expression '61 * * * *'"),
        ("  schedules: [{cron: '* * *'}]", "it needs 5 fields"),
        ("  schedules: [{every: 5}, {every: 6}]", "schedule name 'tick' is used twice"),
        ("  schedules: [{every: 5, input: {tick: 1}}]", "set by the scheduler"),
    ],
)
def test_trigger_mistakes_are_problems_with_a_line(trigger: str, says: str) -> None:
    with pytest.raises(WorkflowError) as info:
        _compile(trigger)
    text = "\n".join(str(p) for p in info.value.problems)
    assert says in text
    assert all(p.line for p in info.value.problems)


def test_input_is_the_body_with_query_headers_and_path_added() -> None:
    got = build_input(b'{"a": 1, "id": "body"}', {"id": "p"}, {"q": ["1", "2"]}, {"x_t": "h"})
    assert got == {"a": 1, "id": "p", "q": ["1", "2"], "x_t": "h"}
    assert build_input(b"", {}, {}, {}) == {}
    assert build_input(b"[1, 2]", {}, {}, {}) == [1, 2]
    with pytest.raises(BadInput, match="must be a JSON object"):
        build_input(b"[1]", {"id": "p"}, {}, {})
    with pytest.raises(BadInput, match="malformed JSON"):
        build_input(b"{", {}, {}, {})


def test_schema_problems_name_each_field() -> None:
    schema = {
        "type": "object",
        "required": ["a", "b"],
        "properties": {"c": {"type": "object", "properties": {"d": {"type": "integer"}}}},
        "additionalProperties": False,
    }
    problems = schema_problems(jsonschema.Draft202012Validator(schema), {"c": {"d": "x"}, "zz": 1})
    found = {(p.field, p.problem) for p in problems}
    assert ("a", "is required") in found and ("b", "is required") in found
    assert ("zz", "is not allowed") in found
    assert any(f == "c/d" and "integer" in p for f, p in found)


def test_routes_match_paths_and_say_which_methods_exist() -> None:
    table = _compile('  http: [{path: "/o/{id}", method: GET}, {path: "/o/{id}", method: PUT}]')
    routes = Routes([table])
    found = routes.match("GET", "/o/42")
    assert found.target is not None and found.params == {"id": "42"}
    assert routes.match("POST", "/o/42").allowed == ("GET", "PUT")
    assert routes.match("GET", "/o/42/x").target is None
    assert routes.match("GET", "/o/42/x").allowed == ()
