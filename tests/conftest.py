"""Shared fixtures: the real test GGUFs, a fake engine for orchestration tests (tests/fake_engine.py),
isolated user dirs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fake_engine import FakeEngine

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


@pytest.fixture
def fake_engine_factory() -> Callable[..., FakeEngine]:
    def make(**kwargs: Any) -> FakeEngine:
        return FakeEngine(**kwargs)

    return make
