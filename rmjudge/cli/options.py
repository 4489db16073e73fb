"""Options shared by several commands, declared once.

Every command that judges (compare, batch, check, eval) takes the same judge options; ``judge_options``
adds them to a command and hands its body one ``JudgeOptions`` (checked as it is made, so a bad value
fails before any model loads)::

    @command
    @judge_options()
    def compare(a: ..., b: ..., judge: JudgeOptions, json_output: JsonOption = False) -> int | None:
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rmjudge.cli.command import Body, DebugOption, parameters_of, present_as
from rmjudge.engines import EngineOptions, Sampling
from rmjudge.session import JudgeOptions
from rmjudge.textio import read_criteria

if TYPE_CHECKING:
    from rmjudge.judge import Judge

PANEL = "Judge options"


def _judge(*names: str, help: str, **settings: Any) -> Any:
    """A judge option: listed under "Judge options" in every judging command's --help."""
    return typer.Option(*names, rich_help_panel=PANEL, help=help, **settings)


ModelOption = Annotated[
    str | None,
    _judge(
        "--model", "-m",
        help=r"An alias (rmjudge models list), hf://owner/repo\[/file.gguf]\[@rev], or a .gguf path; pulled on first "
        "use. Default: rm-r1-qwen-7b. Env: RMJUDGE_MODEL.",
    ),
]  # fmt: skip
TemplateOption = Annotated[
    str | None,
    _judge("--template", help="Prompt family: instruct, reasoning, or a template directory. Default: from the GGUF."),
]
MaxTokensOption = Annotated[
    int | None,
    _judge("--max-tokens", help="Reasoning budget per order (default 2048 instruct, 4096 reasoning). 0: verdict only."),
]
OrderOption = Annotated[str, _judge("--order", help="both (default), ab or ba.")]
TemperatureOption = Annotated[float, _judge("--temperature", help="0 (default) decodes greedily, as RM-R1 evaluates.")]
TopPOption = Annotated[float, _judge("--top-p", help="Nucleus sampling, with --temperature above 0.")]
SeedOption = Annotated[
    int, _judge("--seed", help="Seeds the sampling (recorded in the output) and eval's official-protocol coin.")
]
DecideOption = Annotated[
    str | None,
    _judge(
        "--decide", metavar="RULE",
        help="How the winner is decided. probability (default): the mean P(A better) over both orders (and "
        "samples); a tie only within --tie-margin of 50%. agreement: both orders must agree, else a tie.",
    ),
]  # fmt: skip
TieMarginOption = Annotated[
    float | None,
    _judge("--tie-margin", help="With --decide probability: a tie when P(A better) is within this of 0.5. Default 0."),
]
SamplesOption = Annotated[
    int | None,
    _judge(
        "--samples", metavar="K",
        help="Reasoning traces per order (default 1), each with its own seed (--seed + i); the winner is decided "
        "from all of them. Above 1 needs --temperature above 0.",
    ),
]  # fmt: skip
CriteriaOption = Annotated[
    str | None,
    _judge(
        "--criteria",
        help="What 'better' means here (text, or a file), e.g. 'factual accuracy first, then brevity'; added "
        "to the question.",
    ),
]
GpuLayersOption = Annotated[
    int | None,
    _judge("--gpu-layers", help="Layers offloaded to the GPU: -1 all, 0 none (default: all when llama.cpp has a GPU)."),
]
ThreadsOption = Annotated[int | None, _judge("--threads", help="CPU threads (default: physical cores).")]
ParallelOption = Annotated[
    int | None, _judge("--parallel", help="Sequences decoded at once (default: what the engine measured best here).")
]
SpeculativeOption = Annotated[
    int,
    _judge(
        "--speculative", metavar="N",
        help="Prompt-lookup speculative decoding: draft up to N tokens copied from the prompt (exact at greedy); "
        "0 off (the default: on a CPU it does not pay).",
    ),
]
EndpointOption = Annotated[
    list[str] | None,
    _judge(
        "--endpoint", metavar="URL",
        help="Judge on an OpenAI-compatible server (vLLM, llama-server, SGLang) instead of a local GGUF; repeat "
        "for several. Env: RMJUDGE_ENDPOINTS (comma separated).",
    ),
]  # fmt: skip
ConcurrencyOption = Annotated[int | None, _judge("--concurrency", help="Requests in flight per endpoint.")]
ApiKeyOption = Annotated[
    str | None,
    _judge("--api-key", envvar="RMJUDGE_API_KEY", show_default=False, help="The endpoints' bearer token; never shown."),
]
EngineOption = Annotated[
    str | None,
    _judge(
        "--engine", metavar="NAME",
        help="Advanced: the engine registered under NAME (default: http with --endpoint, else llama).",
    ),
]  # fmt: skip
NoCacheOption = Annotated[bool, _judge("--no-cache", help="Neither read nor write the verdict cache.")]
MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="ROLE=FIELD: which input field is the question, conversation, a, b, label or id "
        "(repeatable; e.g. --map question=instruction). An empty FIELD ignores that role.",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="One JSON object per line (the default when stdout is not a terminal).")
]

# name, option, default: in the order --help lists them
_SHARED: tuple[tuple[str, Any, Any], ...] = (
    ("model", ModelOption, None),
    ("template", TemplateOption, None),
    ("max_tokens", MaxTokensOption, None),
    ("order", OrderOption, "both"),
    ("temperature", TemperatureOption, 0.0),
    ("top_p", TopPOption, 1.0),
    ("seed", SeedOption, 0),
    ("criteria", CriteriaOption, None),
    ("decide", DecideOption, None),
    ("tie_margin", TieMarginOption, None),
    ("samples", SamplesOption, None),
    ("gpu_layers", GpuLayersOption, None),
    ("threads", ThreadsOption, None),
    ("parallel", ParallelOption, None),
    ("speculative", SpeculativeOption, 0),
    ("endpoints", EndpointOption, None),
    ("concurrency", ConcurrencyOption, None),
    ("api_key", ApiKeyOption, None),
    ("engine", EngineOption, None),
    ("no_cache", NoCacheOption, False),
    ("debug", DebugOption, False),  # last: judge_options puts it after the command's own options
)


def _endpoints(given: list[str] | None) -> tuple[str, ...]:
    listed = given or os.environ.get("RMJUDGE_ENDPOINTS", "").split(",")
    return tuple(url.strip() for url in listed if url.strip())


def build_judge_options(values: dict[str, Any]) -> JudgeOptions:
    """The ``JudgeOptions`` of the shared options' values (by parameter name)."""
    from rmjudge.render.console import warn

    return JudgeOptions(
        model=values["model"],
        template=values["template"],
        max_tokens=values["max_tokens"],
        order=values.get("order", "both"),
        sampling=Sampling(temperature=values["temperature"], top_p=values["top_p"], seed=values["seed"]),
        engine=EngineOptions(
            gpu_layers=values["gpu_layers"],
            threads=values["threads"],
            parallel=values["parallel"],
            speculative=values["speculative"],
            endpoints=_endpoints(values["endpoints"]),
            concurrency=values["concurrency"],
            api_key=values["api_key"],
            debug=values["debug"],
        ),
        engine_name=values["engine"],
        no_cache=values["no_cache"],
        decide=values["decide"],
        tie_margin=values["tie_margin"],
        samples=values["samples"],
        criteria=read_criteria(values["criteria"], warn),
    )


def judge_options(*, order: bool = True, endpoint_key: Any = ApiKeyOption) -> Callable[[Body], Body]:
    """Put the shared judge options (without --order when ``order`` is false) where the body's ``judge``
    parameter is; the body receives them as one ``JudgeOptions``. ``endpoint_key``: the option that
    gives the endpoints' key, for a command whose own --api-key means something else (serve)."""
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=option)
        for name, option, default in ((n, endpoint_key if n == "api_key" else o, d) for n, o, d in _SHARED)
        if order or name != "order"
    ]
    names = {parameter.name for parameter in shared}

    def decorate(body: Body) -> Body:
        own = parameters_of(body)
        at = [parameter.name for parameter in own].index("judge")

        def run(**values: Any) -> int | None:
            picked = {name: values.pop(name) for name in names}
            return body(**values, judge=build_judge_options(picked))

        # The judge options where ``judge`` was, --debug last (as every command has it).
        parameters = [*own[:at], *shared[:-1], *own[at + 1 :], shared[-1]]
        return present_as(run, body, parameters)  # type: ignore[no-any-return]

    return decorate


def open_judge(options: JudgeOptions, *, quiet: bool = False) -> Judge:
    """``session.open_judge`` at a terminal: warnings and the download's progress bar on stderr."""
    from rmjudge import session
    from rmjudge.render.console import warn
    from rmjudge.render.progress import progress_bar

    return session.open_judge(options, warn=None if quiet else warn, progress=progress_bar(not quiet))
