"""Shared fixtures: the real test GGUFs, a fake engine for orchestration tests, isolated user dirs."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rmjudge.engine import Generation, ModelInfo, Sampling

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / ".models"
GEMMA = MODELS / "gemma-3-270m-q4_k_m.gguf"
QWEN = MODELS / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
SHARED = ROOT.parent / "shared"


def _model(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path.name} missing: run scripts/fetch_test_models.py (CI always does)")
    return path


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    return _model(GEMMA)


@pytest.fixture(scope="session")
def qwen_path() -> Path:
    return _model(QWEN)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own rmjudge dirs (cache, config): no test sees another's verdicts."""
    home = tmp_path / "rmjudge-home"
    monkeypatch.setenv("RMJUDGE_HOME", str(home))
    monkeypatch.delenv("RMJUDGE_MODEL", raising=False)
    return home


def run_cli(
    *args: str,
    stdin: str | bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rmjudge`` for real, in a subprocess, as a user would."""
    import os

    data = stdin.encode() if isinstance(stdin, str) else stdin
    completed = subprocess.run(
        [sys.executable, "-m", "rmjudge", *args],
        input=data,
        capture_output=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        completed.args,
        completed.returncode,
        completed.stdout.decode("utf-8", "replace"),
        completed.stderr.decode("utf-8", "replace"),
    )


def invoke_cli(
    *args: str,
    stdin: str | bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``rmjudge ARGS`` in this process (typer's CliRunner): what ``run_cli`` returns, without a new
    interpreter's start-up. For everything but what only a real process shows (signals, the entry point)."""
    import os

    from typer.testing import CliRunner

    from rmjudge.cli import app

    before = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args), input=stdin, env=env)
    finally:
        os.chdir(before)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug escaped the command's error handling: show it, as a traceback would
    return subprocess.CompletedProcess(["rmjudge", *args], result.exit_code, result.stdout, result.stderr)


class FakeEngine:
    """An Engine that answers from a script: for orchestration tests, never for model behaviour.

    Tokens are the prompt's characters (code points), so the judge's token arithmetic is real.
    ``script(prompt_text) -> completion`` decides what the "model" writes; ``probability_a`` is what
    the verdict position reads for Chatbot A.
    """

    def __init__(
        self,
        path: Path,
        script: Callable[[str], str] | None = None,
        probability_a: float | Callable[[str], float] = 0.75,
        context: int = 100_000,
        metadata: dict[str, object] | None = None,
    ) -> None:
        path.write_bytes(b"GGUF fake model")
        self.info = ModelInfo(path=path, name="fake", architecture="fake", context_length=context, chat_template=None,
                              metadata=metadata or {"general.name": "fake"})  # fmt: skip
        self.script = script or (lambda prompt: "<type>Chat</type>\n<eval>A is better.</eval>\n<answer>[[A]]</answer>")
        self.probability_a = probability_a
        self.context = context
        self.generate_calls: list[str] = []
        self.probability_calls: list[str] = []

    def chat_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        return [ord(c) for c in "\n".join(f"<{m['role']}>{m['content']}" for m in messages) + "\n<assistant>"]

    def tokenize(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def max_context(self) -> int:
        return self.context

    def versions(self) -> dict[str, str]:
        return {"fake_engine": "1"}

    def _probabilities(self, prompt: str) -> dict[str, float]:
        p = self.probability_a(prompt) if callable(self.probability_a) else self.probability_a
        return {"A": p, "B": 1.0 - p}

    def generate(
        self,
        prompt: list[int],
        *,
        max_tokens: int,
        sampling: Sampling,
        stop: str,
        probe: str,
        choices: tuple[str, ...],
        accept_stop: Callable[[str], bool] | None = None,
    ) -> Generation:
        text_prompt = "".join(map(chr, prompt))
        self.generate_calls.append(text_prompt)
        completion = self.script(text_prompt)[:max_tokens]
        stopped_by = "length" if len(self.script(text_prompt)) > max_tokens else "stop"
        probe_seen = re.search(r"<answer>\s*\[\[", completion) is not None
        return Generation(
            text=completion,
            tokens=[ord(c) for c in completion],
            prompt_tokens=len(prompt),
            stopped_by=stopped_by,
            choice_probabilities=self._probabilities(text_prompt) if probe_seen else None,
            seconds=0.001,
            evaluated_prompt_tokens=len(prompt),
        )

    def choice_probabilities(self, tokens: list[int], choices: tuple[str, ...]) -> dict[str, float]:
        text = "".join(map(chr, tokens))
        self.probability_calls.append(text)
        return self._probabilities(text)


@pytest.fixture
def fake_engine_factory(tmp_path: Path) -> Callable[..., FakeEngine]:
    def make(**kwargs: object) -> FakeEngine:
        return FakeEngine(tmp_path / "fake.gguf", **kwargs)  # type: ignore[arg-type]

    return make
