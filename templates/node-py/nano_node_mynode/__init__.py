"""mynode: counts the words of a text.

Config: ``lower`` (bool, default false): lower-case the words before counting.

Input: ``{"text": "<string>"}``.
Output: ``{"words": <int>, "top": "<most frequent word>" | null}``.

Example step::

    count:
      node: mynode
      with: {lower: true}
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from nanoservice import Context, node

__all__ = ["MynodeConfig", "MynodeInput", "MynodeOutput", "mynode"]


class MynodeConfig(BaseModel):
    """The step's ``with:`` mapping, checked when the workflow compiles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lower: bool = Field(False, description="Lower-case the words before counting.")


class MynodeInput(BaseModel):
    text: str = Field(description="The text to count.")


class MynodeOutput(BaseModel):
    words: int = Field(description="How many words the text has.")
    top: str | None = Field(description="The most frequent word (null for no words).")


@node("mynode", config=MynodeConfig, pure=True)
async def mynode(ctx: Context, input: MynodeInput, config: MynodeConfig) -> MynodeOutput:
    """Count the words of ``input.text``."""
    words = input.text.split()
    if config.lower:
        words = [w.lower() for w in words]
    top = Counter(words).most_common(1)
    return MynodeOutput(words=len(words), top=top[0][0] if top else None)
