"""Render RM-R1's judgment prompts (Jinja2 templates in ``prompts/``) to chat messages.

The RM-R1 models were trained on these exact bytes, so the templates are verbatim copies of
RM-R1's ``str.format`` prompts and a test checks the rendered text against the reference.
Two families:
- ``instruct`` (RM-R1 Qwen2.5-Instruct): a system message with the rubric instructions, then the user turn;
- ``reasoning`` (RM-R1 DeepSeek-R1-Distill-Qwen): a single user turn, the model thinks in ``<think>``.
Each family has a single-turn and a multi-turn (conversation) user template.

Criteria (what "better" means for one comparison, ``Pair.criteria``) enter the prompt in one way
only, so the template bytes stay RM-R1's: the client question (the default question when there is
none; in a conversation, the user's last turn) is followed by a blank line and
``Judge the responses by these criteria: <criteria>``. Being part of the rendered messages, they are
part of the verdict cache key.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, partial
from pathlib import Path
from typing import TypeVar

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from jinja2.exceptions import SecurityError, TemplateError, TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rmjudge.errors import UsageError

FAMILIES = ("instruct", "reasoning")

# Used when the user gives no question: the RM-R1 prompt always has a [Client Question] section.
DEFAULT_QUESTION = (
    "Write the better response: accurate, complete, clear and useful to the reader. "
    "Judge which of the two texts below does this better."
)
# What introduces the criteria after the client question (see the module docstring).
CRITERIA_LEAD = "Judge the responses by these criteria:"


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Pair:
    """Two candidate responses to the same request.

    Single turn: ``question`` is the request. Multi-turn: ``conversation`` holds the earlier
    turns, ending with the user's last turn; ``a`` and ``b`` are the two final assistant turns.
    """

    a: str
    b: str
    question: str | None = None
    conversation: tuple[Message, ...] = ()
    criteria: str | None = None  # what "better" means here, e.g. "factual accuracy first, then brevity"

    def swapped(self) -> Pair:
        return Pair(a=self.b, b=self.a, question=self.question, conversation=self.conversation, criteria=self.criteria)

    @property
    def is_multi_turn(self) -> bool:
        return len(self.conversation) > 1


def _templates_root() -> Path:
    # In the wheel the templates sit inside the package; in a source checkout, beside it.
    packaged = Path(__file__).parent / "prompts"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "prompts"


@dataclass(frozen=True)
class PromptTemplate:
    """One family's templates: ``system.j2`` (optional), ``single_turn.j2``, ``multi_turn.j2``."""

    id: str
    family: str
    directory: Path
    sha256: str  # over every template file the family renders from, so a change shows in the cache key

    @property
    def has_system(self) -> bool:
        return (self.directory / "system.j2").is_file()

    def render(self, pair: Pair) -> list[Message]:
        """The chat messages for ``pair``, in its A/B order.

        Raises UsageError naming the template file and line for an error in the template itself
        (syntax, an undefined variable, a sandbox violation, an include outside its directory).
        """
        return _reporting_template_errors(self.directory, lambda: self._render(pair))

    def _render(self, pair: Pair) -> list[Message]:
        env = _environment(self.directory)
        pair = with_criteria_asked(pair)
        if pair.is_multi_turn:
            earlier = list(pair.conversation)
            user = env.get_template("multi_turn.j2").render(
                conversation_1=[*earlier, Message("assistant", pair.a)],
                conversation_2=[*earlier, Message("assistant", pair.b)],
            )
        else:
            question = pair.conversation[0].content if pair.conversation else pair.question
            user = env.get_template("single_turn.j2").render(
                question=DEFAULT_QUESTION if question is None else question,
                answer_a=pair.a,
                answer_b=pair.b,
            )
        messages = [Message("user", user)]
        if self.has_system:
            messages.insert(0, Message("system", env.get_template("system.j2").render()))
        return messages


def with_criteria_asked(pair: Pair) -> Pair:
    """``pair`` with its criteria written into its client question (see the module docstring), no
    criteria left over; the pair itself when it has none."""
    criteria = (pair.criteria or "").strip()
    if not criteria:
        return replace(pair, criteria=None)
    ask = f"\n\n{CRITERIA_LEAD} {criteria}"
    if pair.is_multi_turn or pair.conversation:
        turns = list(pair.conversation)
        users = [i for i, turn in enumerate(turns) if turn.role == "user"]
        last = users[-1] if users else len(turns) - 1
        turns[last] = Message(turns[last].role, turns[last].content + ask)
        return replace(pair, conversation=tuple(turns), criteria=None)
    question = DEFAULT_QUESTION if pair.question is None else pair.question
    return replace(pair, question=question + ask, criteria=None)


# -- the user's own templates: confined to their directory, errors named by file and line --------

T = TypeVar("T")
_VARIABLES = "single_turn.j2 gets question, answer_a, answer_b; multi_turn.j2 gets conversation_1, conversation_2"


class _ConfinedLoader(FileSystemLoader):
    """Templates from the search path only: no ``..``, and no link leading out of it."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        roots = [Path(root).resolve() for root in self.searchpath]
        if not any(Path(filename).resolve().is_relative_to(root) for root in roots):
            raise TemplateNotFound(template, f"{template} leads outside the template directory")
        return source, filename, uptodate


def _template_problem(error: Exception, directory: Path) -> str:
    if isinstance(error, TemplateSyntaxError):
        return f"syntax error: {error.message}"
    if isinstance(error, UndefinedError):
        return f"{error.message} ({_VARIABLES})"
    if isinstance(error, SecurityError):
        return f"not allowed in a sandboxed template: {error.message}"
    if isinstance(error, TemplateNotFound):
        parts = Path(error.name or "").parts
        if ".." in parts or Path(error.name or "").is_absolute() or "outside" in (error.message or ""):
            return f"cannot include {error.name!r}: a template includes only files in its own directory"
        return f"no template {error.name!r} in {directory}"
    return f"{type(error).__name__}: {error}"


def _reporting_template_errors(directory: Path, render: Callable[[], T]) -> T:
    """``render()``, with an error raised by template code turned into one line naming its file and line."""
    try:
        return render()
    except Exception as error:
        filename, line = getattr(error, "filename", None), getattr(error, "lineno", None)
        if not isinstance(error, TemplateSyntaxError):
            # Jinja rewrites the traceback so template code shows as frames of the .j2 file itself.
            for frame, frame_line in traceback.walk_tb(error.__traceback__):
                if frame.f_code.co_filename.endswith(".j2"):
                    filename, line = frame.f_code.co_filename, frame_line
        if filename is None and not isinstance(error, TemplateError):
            raise  # not the template's doing
        where = f"template {filename or directory}" + (f", line {line}" if line else "")
        problem = _template_problem(error, directory).rstrip(".")
        raise UsageError(f"{where}: {problem}: fix the template") from None


@cache
def _environment(directory: Path) -> ImmutableSandboxedEnvironment:
    # Sandboxed: templates may come from the user (--template DIR). No autoescape: plain text.
    # Undefined variables are errors, not silently empty parts of a prompt the model was trained on.
    loader = _ConfinedLoader([str(directory), str(_templates_root())])
    return ImmutableSandboxedEnvironment(loader=loader, undefined=StrictUndefined, autoescape=False)


def _hash_directory(directory: Path) -> str:
    digest = hashlib.sha256()
    shared = sorted(_templates_root().glob("_*.j2"))
    for path in sorted(directory.glob("*.j2")) + shared:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def load_template(name_or_dir: str) -> PromptTemplate:
    """A built-in family (``instruct``/``reasoning``) or a directory of the user's own templates."""
    if name_or_dir in FAMILIES:
        directory = _templates_root() / name_or_dir
        return PromptTemplate(f"rm-r1-{name_or_dir}", name_or_dir, directory, _hash_directory(directory))
    directory = Path(name_or_dir).expanduser()
    if not (directory / "single_turn.j2").is_file():
        raise UsageError(
            f"--template {name_or_dir!r}: use 'instruct', 'reasoning', or a directory with "
            "single_turn.j2 and multi_turn.j2 (and system.j2 for a system message)"
        )
    family = "instruct" if (directory / "system.j2").is_file() else "reasoning"
    template = PromptTemplate(f"custom:{directory.resolve()}", family, directory, _hash_directory(directory))
    _try_out(template)
    return template


_SAMPLE_TURNS = (Message("user", "Hello"), Message("assistant", "Hi! How can I help?"), Message("user", "Say hi"))


def _try_out(template: PromptTemplate) -> None:
    """Compile every template and render sample pairs, so a broken template is reported before a
    model loads rather than at the first pair."""
    env = _environment(template.directory)
    for name in ("system.j2", "single_turn.j2", "multi_turn.j2"):
        if (template.directory / name).is_file():
            _reporting_template_errors(template.directory, partial(env.get_template, name))
    template.render(Pair(a="Hi.", b="Hello!", question="Say hi"))
    if (template.directory / "multi_turn.j2").is_file():
        template.render(Pair(a="Hi.", b="Hello!", conversation=_SAMPLE_TURNS))


def detect_family(metadata: dict[str, object]) -> str:
    """The RM-R1 family a GGUF belongs to, from its own metadata: name and chat template.

    DeepSeek-R1-Distill models (RM-R1 "reasoning") carry DeepSeek's chat template, with its
    full-width ``<｜Assistant｜>`` marker; everything else is treated as the instruct family.
    """
    name = " ".join(str(metadata.get(key, "")) for key in ("general.name", "general.basename", "general.finetune"))
    template = str(metadata.get("tokenizer.chat_template") or "")
    if "deepseek" in name.lower() or "<｜Assistant｜>" in template:
        return "reasoning"
    return "instruct"
