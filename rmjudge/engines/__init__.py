"""Engines by name. The built-in ones are registered exactly as a plugin's would be: a factory under a
name in the ``rmjudge.engines`` entry-point group (see pyproject.toml), so a third-party engine slots in
by installing a package, with no edit here or in ``judge.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING

from rmjudge.engines.base import AnswerFormat, Engine, EngineInfo, Job, Output, Prompt, Sampling
from rmjudge.errors import UsageError

if TYPE_CHECKING:
    from rmjudge.models import ResolvedModel

__all__ = [
    "AnswerFormat",
    "Engine",
    "EngineInfo",
    "EngineOptions",
    "Job",
    "Output",
    "Prompt",
    "Sampling",
    "build_engine",
    "engine_names",
]

ENTRY_POINT_GROUP = "rmjudge.engines"
# The same entries as pyproject.toml declares, for a source tree run without installing it.
BUILT_IN = {"llama": "rmjudge.engines.llama:create", "http": "rmjudge.engines.http:create"}


@dataclass(frozen=True)
class EngineOptions:
    """Everything any engine may be built from; each engine reads the fields that concern it."""

    model: ResolvedModel | None = None  # a local GGUF (the llama engine)
    gpu_layers: int | None = None
    threads: int | None = None
    parallel: int | None = None  # sequences decoded at once (None: the engine's measured default)
    speculative: int = 0  # prompt-lookup draft length, 0: off (the llama engine; exact at greedy decoding)
    endpoints: tuple[str, ...] = ()  # OpenAI-compatible servers (the http engine)
    concurrency: int | None = None  # requests in flight per endpoint
    api_key: str | None = field(default=None, repr=False)  # never shown: not in a repr, a log or an error
    debug: bool = False

    def __post_init__(self) -> None:
        if self.gpu_layers is not None and self.gpu_layers < -1:
            raise UsageError(f"--gpu-layers {self.gpu_layers}: give -1 (all layers), 0 (none) or a number of layers")
        for name, value in (("threads", self.threads), ("parallel", self.parallel), ("concurrency", self.concurrency)):
            if value is not None and value < 1:
                raise UsageError(f"--{name} {value}: give 1 or more (leave it out for the default)")


EngineFactory = Callable[[EngineOptions], Engine]


def _entries() -> dict[str, metadata.EntryPoint]:
    entries = {entry.name: entry for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for name, value in BUILT_IN.items():
        entries.setdefault(name, metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP))
    return entries


def engine_names() -> list[str]:
    return sorted(_entries())


def build_engine(options: EngineOptions, name: str | None = None) -> Engine:
    """The engine ``name`` (default: ``http`` when endpoints are given, else ``llama``) built from ``options``."""
    name = name or ("http" if options.endpoints else "llama")
    entries = _entries()
    if name not in entries:
        raise UsageError(f"unknown engine {name!r}: installed engines are {', '.join(sorted(entries)) or 'none'}")
    # Only the engine asked for is imported: another engine's missing dependency or broken plugin is no concern here.
    factory: EngineFactory = entries[name].load()
    return factory(options)
