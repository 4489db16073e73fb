"""The command line as a whole: help, the shared options, one-line errors and their exit codes, signals.

Most tests run the app in process (typer's CliRunner: fast); the few that must prove what only a real
process shows (the installed entry point, imports at start-up, signals) run ``python -m rmjudge``.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rmjudge import __version__, session
from rmjudge.cli import app
from rmjudge.config import parse_config
from rmjudge.engines import EngineOptions, Sampling
from rmjudge.errors import ExitCode, RmjudgeError, Terminated, UsageError
from rmjudge.prompts import DEFAULT_QUESTION
from rmjudge.session import JudgeOptions

from .conftest import ROOT, run_cli

A = str(ROOT / "examples" / "a.txt")
B = str(ROOT / "examples" / "b.txt")

COMMANDS = [
    [],
    ["compare"],
    ["batch"],
    ["check"],
    ["eval"],
    ["models"],
    ["models", "list"],
    ["models", "search"],
    ["models", "pull"],
    ["models", "info"],
    ["models", "rm"],
    ["cache"],
    ["cache", "stats"],
    ["cache", "clear"],
]


def invoke(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    """``rmjudge ARGS`` in this process; the result has exit_code, stdout and stderr."""
    return CliRunner().invoke(app, list(args), input=stdin, env=env)


def assert_one_line_error(result: Any, code: int, message: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[JudgeOptions]:
    """The options each command opens its judge with; the judge itself fails (no model is loaded)."""
    seen: list[JudgeOptions] = []

    def open_judge(options: JudgeOptions, **_: object) -> Any:
        seen.append(options)
        raise UsageError("stop here: the options were recorded")

    monkeypatch.setattr(session, "open_judge", open_judge)
    return seen


# -- help, version, completion ------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "rmjudge")
def test_every_command_has_help(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_the_judge_options_are_declared_once_and_shared() -> None:
    for command in ("compare", "batch", "check", "eval"):
        text = invoke(command, "--help", env={"COLUMNS": "200"}).stdout
        for option in ("--model", "--max-tokens", "--parallel", "--endpoint", "--concurrency", "--api-key", "--engine"):
            assert option in text, (command, option)
        assert "Judge options" in text and "--debug" in text
    assert "--order" not in invoke("eval", "--help", env={"COLUMNS": "200"}).stdout  # eval's protocol decides


def test_version_through_the_installed_entry_points() -> None:
    result = run_cli("--version")  # python -m rmjudge
    assert result.returncode == 0 and result.stdout.strip() == f"rmjudge {__version__}"
    script = Path(sys.executable).parent / "rmjudge"
    if not script.exists():
        pytest.skip("the rmjudge script is not installed beside this interpreter")
    installed = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0 and installed.stdout.strip() == f"rmjudge {__version__}"


def test_shell_completion_is_on() -> None:
    assert "--install-completion" in invoke("--help", env={"COLUMNS": "200"}).stdout

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {"_RMJUDGE_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
        result = invoke(env=env)
        assert result.exit_code == 0, result.output
        return result.stdout.split()

    assert complete("rmjudge models p") == ["pull"]
    assert complete("rmjudge compare a.txt b.txt --max") == ["--max-tokens"]
    assert "--parallel" in complete("rmjudge batch --pa")


def test_help_loads_no_model_libraries() -> None:
    probe = (
        "import sys\n"
        "from rmjudge.cli import main\n"
        "for argv in (['--help'], ['compare', '--help'], ['batch', '--help'], ['models', '--help']):\n"
        "    sys.argv = ['rmjudge', *argv]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('LOADED', sorted(m for m in ('numpy', 'llama_cpp', 'jinja2', 'huggingface_hub') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "LOADED []"


def _core_modules() -> dict[str, Path]:
    """Every module under rmjudge/ but the presentation (cli/, render/) and ``python -m``'s __main__."""
    modules = {}
    for path in sorted((ROOT / "rmjudge").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[1] in ("cli", "render", "__main__"):
            continue
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def test_core_modules_import_no_rich_and_no_presentation() -> None:
    core = _core_modules()
    assert {"rmjudge.session", "rmjudge.batch", "rmjudge.evaluate", "rmjudge.check"} <= set(core)
    # Statically: not even inside a function (a lazy import would still tie the core to the terminal).
    for module, path in core.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("rich", "typer", "rmjudge.render", "rmjudge.cli")), (module, name)
    # And for real: every core module imports with rich made unimportable. (httpx would load rich for
    # its own command line when it can; it does without it, as our core must.)
    probe = "import importlib, sys\nsys.modules['rich'] = None\n"
    probe += f"for m in {sorted(core)!r}:\n    importlib.import_module(m)\nprint('loaded')\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded"


# -- the shared judge options -------------------------------------------------------------------


def test_judge_options_reach_the_core(opened: list[JudgeOptions]) -> None:
    result = invoke(
        "compare", A, B, "--model", "m.gguf", "--max-tokens", "64", "--order", "ba", "--temperature", "0.5",
        "--top-p", "0.9", "--seed", "7", "--threads", "2", "--gpu-layers", "-1", "--parallel", "3",
        "--speculative", "4", "--endpoint", "http://127.0.0.1:1/v1", "--endpoint", "http://127.0.0.1:2/v1",
        "--concurrency", "4", "--api-key", "s3cret-key", "--engine", "http", "--no-cache", "--debug",
    )  # fmt: skip
    assert isinstance(result.exception, UsageError)  # --debug: the error is raised, not turned into a line
    (options,) = opened
    assert (options.model, options.max_tokens, options.order, options.no_cache) == ("m.gguf", 64, "ba", True)
    assert options.sampling == Sampling(temperature=0.5, top_p=0.9, seed=7)
    assert options.engine == EngineOptions(
        gpu_layers=-1, threads=2, parallel=3, speculative=4,
        endpoints=("http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"),
        concurrency=4, api_key="s3cret-key", debug=True,
    )  # fmt: skip
    assert options.engine_name == "http"
    assert "s3cret-key" not in repr(options)  # the key is never shown


def test_endpoints_and_api_key_from_the_environment(opened: list[JudgeOptions]) -> None:
    env = {"RMJUDGE_ENDPOINTS": "http://127.0.0.1:1/v1, http://127.0.0.1:2/v1", "RMJUDGE_API_KEY": "from-env"}
    assert_one_line_error(invoke("compare", A, B, env=env), ExitCode.USAGE, "stop here")
    assert opened[0].engine.endpoints == ("http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1")
    assert opened[0].engine.api_key == "from-env"
    assert opened[0].engine.parallel is None  # not given: the engine's measured default
    help_text = invoke("compare", "--help", env={**env, "COLUMNS": "200"}).stdout
    assert "from-env" not in help_text and "RMJUDGE_API_KEY" in help_text


def test_every_judging_command_opens_its_judge_from_the_same_options(
    opened: list[JudgeOptions], tmp_path: Path
) -> None:  # fmt: skip
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "q", "chosen": "x", "rejected": "y"}\n')
    common = ("--max-tokens", "8", "--parallel", "2", "--seed", "3")
    invoke("batch", str(pairs), *common, "--strict")
    invoke("eval", str(pairs), *common)
    assert [(o.max_tokens, o.engine.parallel, o.sampling.seed) for o in opened] == [(8, 2, 3), (8, 2, 3)]


def test_config_sets_how_the_judge_runs_and_the_command_line_wins(tmp_path: Path) -> None:
    path = tmp_path / ".rmjudge.toml"
    config = parse_config(path, {"parallel": 2, "endpoints": "http://127.0.0.1:9/v1", "concurrency": 8}, "")
    assert config.defaults.endpoints == ("http://127.0.0.1:9/v1",)
    merged = JudgeOptions(engine=EngineOptions(parallel=5)).over(config.defaults)
    assert (merged.engine.parallel, merged.engine.endpoints, merged.engine.concurrency) == (
        5,
        ("http://127.0.0.1:9/v1",),
        8,
    )
    with pytest.raises(UsageError, match="parallel: expected a whole number, 1 or more"):
        parse_config(path, {"parallel": 0}, "")
    with pytest.raises(UsageError, match=r"check\[0\]\.endpoints: unknown key"):
        parse_config(path, {"check": [{"files": "*.md", "endpoints": ["http://x"]}]}, "")


# -- bad values: one line, their exit code, before any model work ----------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--temperature", "nan"), "--temperature nan: give a number, 0 or more"),
        (("--temperature", "inf"), "--temperature inf: give a number, 0 or more"),
        (("--temperature", "-1"), "--temperature -1.0"),
        (("--top-p", "0"), "--top-p 0.0: give a number above 0 and at most 1"),
        (("--top-p", "nan"), "--top-p nan"),
        (("--threads", "0"), "--threads 0: give 1 or more"),
        (("--threads", "-3"), "--threads -3: give 1 or more"),
        (("--gpu-layers", "-2"), "--gpu-layers -2: give -1 (all layers), 0 (none)"),
        (("--parallel", "0"), "--parallel 0: give 1 or more"),
        (("--concurrency", "0"), "--concurrency 0: give 1 or more"),
        (("--order", "abba"), "--order 'abba': use both, ab or ba"),
        (("--max-tokens", "-1"), "--max-tokens must be 0 or more"),
        (("--expect", "C"), "--expect takes A or B"),
    ],
)
def test_bad_values_are_refused_before_any_model_work(
    args: tuple[str, ...], message: str, opened: list[JudgeOptions]
) -> None:  # fmt: skip
    assert_one_line_error(invoke("compare", A, B, *args), ExitCode.USAGE, message)
    assert opened == []


def test_sampling_and_engine_options_check_themselves() -> None:
    for bad in ({"temperature": float("nan")}, {"temperature": float("inf")}, {"top_p": 1.5}):
        with pytest.raises(UsageError):
            Sampling(**bad)  # type: ignore[arg-type]
    Sampling(temperature=1.5, top_p=1.0)
    for bad_engine in ({"gpu_layers": -2}, {"threads": 0}, {"parallel": -1}, {"concurrency": 0}):
        with pytest.raises(UsageError):
            EngineOptions(**bad_engine)  # type: ignore[arg-type]
    assert EngineOptions(gpu_layers=-1, threads=1, parallel=1, concurrency=1).gpu_layers == -1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("compare",), "missing argument 'a'; see rmjudge compare --help"),
        (("compare", A, B, "--threads", "many"), "see rmjudge compare --help"),
        (("compare", A, B, "--bogus"), "no such option: --bogus; see rmjudge compare --help"),
        (("models", "pull", "--quant"), "requires an argument; see rmjudge models pull --help"),
        (("nonsense",), "no such command 'nonsense'; see rmjudge --help"),
    ],
)
def test_argument_errors_are_one_line(args: tuple[str, ...], message: str) -> None:
    assert_one_line_error(invoke(*args), ExitCode.USAGE, message)


def test_bad_inputs_give_one_line_and_their_exit_code(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    cases = [
        (["compare", A, str(tmp_path / "missing.txt")], ExitCode.INPUT, "no such file"),
        (["compare", A, str(latin1)], ExitCode.INPUT, "not UTF-8"),
        (["compare", A, A, "--model", str(tmp_path / "none.gguf")], ExitCode.MODEL, "none.gguf"),
        (["compare", A, A, "--model", "rm-r1-qwen-7bb"], ExitCode.MODEL, "rm-r1-qwen-7b"),
        (["compare", A, A, "--model", A], ExitCode.MODEL, "not a GGUF"),
        (["compare", A, A, "--expect", "C"], ExitCode.USAGE, "--expect"),
        (["compare", "-", "-"], ExitCode.USAGE, "only one input"),
    ]
    for args, code, message in cases:
        assert_one_line_error(invoke(*args, stdin="x"), code, message)


def test_a_question_that_looks_like_a_missing_file_is_refused(tmp_path: Path) -> None:
    for typo in ("missing_file.txt", "prompts/question", str(tmp_path / "q.md")):
        result = invoke("compare", A, B, "-q", typo, "--show-prompt", "--template", "instruct")
        assert_one_line_error(result, ExitCode.INPUT, f"--question {typo}: no such file")
        assert "add a space or end it with '?'" in result.stderr
    for literal in ("Which is kinder?", "Node.js?", "3.14", "Summarise the report"):
        shown = invoke("compare", A, B, "-q", literal, "--show-prompt", "--template", "instruct")
        assert shown.exit_code == 0, shown.output
        assert literal in shown.stdout


def test_an_empty_question_means_the_default_one_said_once(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    for value, where in (("", ""), (str(empty), f" in {empty}")):
        result = invoke("compare", A, B, "-q", value, "--show-prompt", "--template", "instruct")
        assert result.exit_code == 0, result.output
        assert DEFAULT_QUESTION in result.stdout
        assert result.stderr.count("is empty") == 1
        assert f"the question{where} is empty: judging with the default task statement" in result.stderr


# -- the exit-code policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "code", "message"),
    [
        (RuntimeError("boom"), ExitCode.INTERNAL, "internal error: RuntimeError: boom (run again with --debug"),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED, "interrupted; everything already written is kept"),
        (Terminated(), ExitCode.TERMINATED, "terminated; everything already written is kept"),
        (RmjudgeError("a [bracketed] message"), ExitCode.USAGE, "a [bracketed] message"),
    ],
)
def test_what_a_command_raises_becomes_one_line_and_its_code(
    raised: BaseException, code: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    def open_judge(options: JudgeOptions, **_: object) -> Any:
        raise raised

    monkeypatch.setattr(session, "open_judge", open_judge)
    assert_one_line_error(invoke("compare", A, B), code, message)
    if not isinstance(raised, KeyboardInterrupt):
        assert isinstance(invoke("compare", A, B, "--debug").exception, type(raised))  # the traceback's exception


def test_exit_codes_are_one_enum() -> None:
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 4, 5, 6, 70, 130, 143]
    assert issubclass(Terminated, KeyboardInterrupt)


# -- a real process: signals ------------------------------------------------------------------------


def _child_default_signals() -> None:
    # A test run in the background (nohup make test &) passes SIGINT on as ignored: undo that for the child.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "rmjudge", *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=ROOT, env={**os.environ, "COLUMNS": "200"}, preexec_fn=_child_default_signals,
    )  # fmt: skip


def _python_start_up() -> float:
    """Seconds the interpreter takes to start and import the bare package (``python -c "import rmjudge"``,
    the standard library's ``typing`` included): before that no code of the command runs."""
    times = []
    for _ in range(2):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import rmjudge"], check=True, timeout=60)
        times.append(time.perf_counter() - started)
    return min(times)


def test_ctrl_c_while_starting_prints_no_traceback() -> None:
    # From the moment rmjudge's own code runs: importing typer, rich and the commands takes a few tenths.
    start_up = _python_start_up()
    interrupted = 0
    for delay in (2 * start_up, 2 * start_up + 0.1, 2 * start_up + 0.25, 2 * start_up + 0.5):
        process = _start("compare", A, B, "--show-prompt", "--template", "instruct")
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert b"Traceback" not in stderr, (delay, stderr.decode())
        assert process.returncode in (ExitCode.OK, ExitCode.INTERRUPTED, -signal.SIGINT), (delay, process.returncode)
        interrupted += process.returncode == ExitCode.INTERRUPTED
    assert interrupted, "no Ctrl-C landed while the command ran: the test proved nothing"


def test_sigterm_keeps_the_written_lines_and_exits_143(tmp_path: Path) -> None:
    # batch from a pipe that stays open: a broken line is answered at once (no model needed), then it waits.
    process = _start("batch", "--model", str(tmp_path / "none.gguf"), stdin=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"{broken\n")
    process.stdin.flush()
    first = process.stdout.readline()  # written and flushed: the batch is running
    time.sleep(0.5)  # let it count the line and wait for the next one
    process.send_signal(signal.SIGTERM)
    rest, stderr = process.communicate(timeout=60)
    assert process.returncode == ExitCode.TERMINATED, stderr.decode()
    assert b'"error"' in first and first.endswith(b"\n") and rest == b""
    assert b"Traceback" not in stderr and b"interrupted: 1 lines written" in stderr


# -- opening a judge --------------------------------------------------------------------------------


def test_open_judge_says_where_the_model_came_from_and_builds_the_judge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    from rmjudge import judge, models
    from rmjudge.models import ResolvedModel

    gguf = tmp_path / "found.gguf"
    gguf.write_bytes(b"GGUF")
    note = "rm-r1-qwen-7b: took someone/RM-R1-GGUF (900 downloads) from a hub search"
    monkeypatch.setattr(models, "resolve_model", lambda spec, progress=None: ResolvedModel(gguf, note=note))
    monkeypatch.setattr(models, "memory_warning", lambda path: f"warning: {path.name} is large")
    from rmjudge import engines

    monkeypatch.setattr(engines, "build_engine", lambda options, name=None: (options, name))
    built: list[dict[str, Any]] = []
    monkeypatch.setattr(judge, "Judge", lambda engine, **kwargs: built.append({"engine": engine, **kwargs}))
    heard: list[str] = []
    options = JudgeOptions(model="rm-r1-qwen-7b", max_tokens=16, order="ab", engine=EngineOptions(threads=2))
    session.open_judge(options, warn=heard.append)
    assert heard == [note, "warning: found.gguf is large"]
    (made,) = built
    engine_options, engine_name = made["engine"]
    assert engine_options.model.path == gguf and engine_options.threads == 2 and engine_name is None
    assert made["max_tokens"] == 16 and made["order"] == "ab" and made["cache"] is not None
    session.open_judge(JudgeOptions(no_cache=True), warn=heard.append)
    assert built[1]["cache"] is None


def test_models_pull_prints_the_file_and_the_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rmjudge import models
    from rmjudge.models import ResolvedModel

    gguf = tmp_path / "m-Q4_K_M.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 2_000_000)
    pulled = ResolvedModel(gguf, repo="someone/m-GGUF", revision="abc123", quant="Q4_K_M", note="found by a search")
    monkeypatch.setattr(models, "pull_model", lambda *args, **kwargs: pulled)
    monkeypatch.setattr("rmjudge.render.console.wants_json", lambda flag: flag)  # as on a terminal
    result = invoke("models", "pull", "m", env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{gguf}  (2.0 MB, Q4_K_M, someone/m-GGUF@abc123)"
    assert "found by a search" in result.stderr


EXAMPLE_A, EXAMPLE_B = str(ROOT / "examples" / "a.txt"), str(ROOT / "examples" / "b.txt")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    "command",
    [["cache", "stats", "--json"], ["compare", EXAMPLE_A, EXAMPLE_B, "--show-prompt", "--template", "instruct"]],
)
def test_a_full_disk_under_standard_output_is_exit_6_in_one_line(command: list[str]) -> None:
    with open("/dev/full", "wb") as full:
        completed = subprocess.run(
            [sys.executable, "-m", "rmjudge", *command],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert completed.returncode == ExitCode.OUTPUT, completed.stderr
    assert completed.stderr.strip() == "rmjudge: cannot write standard output: No space left on device"
