"""The request bodies the server accepts, validated with pydantic, and one-line messages for bad ones."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rmjudge.prompts import Message, Pair

_STRICT = ConfigDict(extra="forbid", strict=True)
MAX_ERRORS_SHOWN = 3


class Turn(BaseModel):
    model_config = _STRICT

    role: Literal["user", "assistant"]
    content: str


def _conversation(turns: list[Turn] | None) -> tuple[Message, ...]:
    return tuple(Message(turn.role, turn.content) for turn in turns or ())


class _Request(BaseModel):
    """A question, or a conversation ending with the user's turn both texts answer (not both)."""

    model_config = _STRICT

    question: str | None = None
    conversation: list[Turn] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_request(self) -> _Request:
        if self.question is not None and self.conversation is not None:
            raise ValueError("give a question or a conversation, not both")
        if self.conversation is not None and self.conversation[-1].role != "user":
            raise ValueError("the conversation must end with a user turn: the request the texts answer")
        return self

    def request(self) -> tuple[str | None, tuple[Message, ...]]:
        """(question, earlier turns); a conversation of one user turn is a question."""
        conversation = _conversation(self.conversation)
        if len(conversation) == 1:
            return conversation[0].content, ()
        return self.question, conversation


class PairBody(_Request):
    """``{"question", "a", "b"}`` or ``{"conversation": [{role, content}, ...], "a", "b"}``."""

    a: str
    b: str

    def to_pair(self) -> Pair:
        question, conversation = self.request()
        return Pair(a=self.a, b=self.b, question=question, conversation=conversation)


class RankBody(_Request):
    candidates: list[str] = Field(min_length=2)
    strategy: str = "auto"
    reference: str | None = None
    names: list[str] | None = None
    seed: int = 0
    max_comparisons: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _names_match(self) -> RankBody:
        if self.names is not None and len(self.names) != len(self.candidates):
            raise ValueError(f"names has {len(self.names)} entries for {len(self.candidates)} candidates")
        return self


class RewardsBody(_Request):
    completions: list[str] = Field(min_length=1)
    reference: str | None = None


class GetRewardBody(BaseModel):
    """OpenRLHF's remote reward request: ``query`` is each prompt with its response appended."""

    model_config = ConfigDict(extra="ignore", strict=True)  # a newer OpenRLHF may send more keys

    query: list[str] = Field(min_length=1)
    prompts: list[str]
    labels: list[Any] | None = None

    @model_validator(mode="after")
    def _same_lengths(self) -> GetRewardBody:
        if len(self.prompts) != len(self.query):
            raise ValueError(f"prompts has {len(self.prompts)} entries for {len(self.query)} queries: give one each")
        if self.labels is not None and len(self.labels) != len(self.query):
            raise ValueError(f"labels has {len(self.labels)} entries for {len(self.query)} queries: give one each")
        return self


def _where(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the body"


def describe(error: ValidationError) -> str:
    """A pydantic error as one line: ``a: Field required; pairs[2].b: Input should be a valid string``."""
    problems = []
    for item in error.errors(include_url=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        location = tuple(part for part in item["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        problems.append(f"{_where(location)}: {message}")
    shown = "; ".join(problems[:MAX_ERRORS_SHOWN])
    more = len(problems) - MAX_ERRORS_SHOWN
    return shown + (f" (and {more} more)" if more > 0 else "")
