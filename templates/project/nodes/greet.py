"""greet: a local node of this project (every ``*.py`` in ``nodes/`` is loaded by ``nano``)."""

from __future__ import annotations

from pydantic import BaseModel

from nanoservice import Context, node


class Person(BaseModel):
    name: str


class Greeting(BaseModel):
    message: str


class GreetConfig(BaseModel):
    greeting: str = "Hello"


@node("greet", config=GreetConfig, pure=True)
async def greet(ctx: Context, person: Person, config: GreetConfig) -> Greeting:
    """Say ``<greeting>, <name>!``."""
    return Greeting(message=f"{config.greeting}, {person.name.strip()}!")
