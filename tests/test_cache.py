"""The verdict cache never stops a command: a corrupt file, a damaged page or a read-only directory
give one warning naming the file and what to do, and judging goes on without the cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rmjudge.cache import VerdictCache, default_cache_path
from rmjudge.errors import UsageError
from rmjudge.judge import Judge
from tests.conftest import ROOT, FakeEngine, run_cli

PAGE = 4096  # SQLite's default page size


def garbage_header(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a database, " * 300)


def damaged_pages(path: Path, pages: range = range(2, 4)) -> None:
    """A real cache with ``pages`` overwritten (by default the table's and the index's root pages,
    which every lookup reads); the header, page 1, is fine."""
    cache = VerdictCache(path)
    for index in range(500):
        cache.put(f"k{index}", {"index": index, "padding": "x" * 200})
    cache.close()
    data = bytearray(path.read_bytes())
    start, end = (pages.start - 1) * PAGE, (pages.stop - 1) * PAGE
    data[start:end] = b"\xff" * (end - start)
    path.write_bytes(bytes(data))


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` and its files made unwritable, for root too (immutable), then restored."""
    paths = [directory, *directory.iterdir()]
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", *map(str, paths)]).returncode != 0:
            pytest.skip("running as root without chattr +i: no way to make a directory read-only here")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", *map(str, paths)], check=True)
    else:
        modes = {path: path.stat().st_mode for path in paths}
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "rmjudge.cache"]


def test_garbage_header_is_reported_once_and_the_cache_is_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "verdicts.sqlite3"
    garbage_header(path)
    cache = VerdictCache(path)
    assert cache.problem is not None and "is corrupt (file is not a database)" in cache.problem
    assert warnings_in(caplog) == []  # opened quietly: the warning comes when the cache is used
    assert cache.get("k") is None
    cache.put("k", {"x": 1})
    assert cache.get("k") is None
    (warning,) = warnings_in(caplog)
    assert warning == (
        f"rmjudge: the verdict cache {path} is corrupt (file is not a database): run `rmjudge cache clear` "
        "(or delete the file); judging without it"
    )
    stats = cache.stats()
    assert (stats.entries, stats.problem) == (0, cache.problem) and stats.bytes == path.stat().st_size


def test_clear_removes_a_corrupt_file_and_starts_a_fresh_cache(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite3"
    garbage_header(path)
    cache = VerdictCache(path)
    assert cache.clear() == 0
    assert cache.problem is None and cache.stats().problem is None
    cache.put("k", {"x": 1})
    assert cache.get("k") == {"x": 1} and VerdictCache(path).get("k") == {"x": 1}


def test_a_damaged_page_turns_the_cache_off_at_first_use(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "verdicts.sqlite3"
    damaged_pages(path)
    cache = VerdictCache(path)  # the header is fine: it opens
    assert cache.get("k1") is None
    assert cache.problem is not None and "is corrupt (database disk image is malformed)" in cache.problem
    cache.put("k2", {"x": 2})
    assert len(warnings_in(caplog)) == 1
    assert cache.clear() == 0 and cache.get("k1") is None and cache.problem is None


def test_stats_finds_a_damaged_page_no_key_has_touched(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite3"
    damaged_pages(path, range(10, 11))  # a leaf: counting the entries does not read it
    stats = VerdictCache(path).stats()
    assert stats.problem is not None and "malformed: Page 10: btreeInitPage() returns error code 11" in stats.problem
    assert "\n" not in stats.problem


@pytest.mark.parametrize("existing", [True, False])
def test_a_read_only_directory_turns_the_cache_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, existing: bool
) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    path = directory / "verdicts.sqlite3"
    if existing:
        stored = VerdictCache(path)
        stored.put("k", {"x": 1})
        stored.close()
    with read_only(directory):
        cache = VerdictCache(path)
        assert cache.get("k") is None
        cache.put("k2", {"x": 2})
        assert cache.problem == (
            f"the verdict cache {path} cannot be used (unable to open database file): make {directory} writable, "
            "or set RMJUDGE_HOME to another directory"
        )
        assert len(warnings_in(caplog)) == 1
        if existing:  # nothing can be removed from a read-only directory: say so, do not pretend
            with pytest.raises(UsageError, match=rf"cannot remove {path}.*: fix the permissions of {directory}"):
                cache.clear()
        else:
            assert cache.clear() == 0  # nothing stored, nothing to clear
    assert VerdictCache(path).get("k") == ({"x": 1} if existing else None)


def test_judging_goes_on_without_a_broken_cache(
    fake_engine_factory: Callable[..., FakeEngine], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "verdicts.sqlite3"
    garbage_header(path)
    engine = fake_engine_factory()
    judge = Judge(engine=engine, cache=VerdictCache(path))
    first, second = judge.compare("Q?", "a", "b"), judge.compare("Q?", "a", "b")
    assert first.winner == second.winner == "tie"  # the fake model answers "A" in both orders
    assert not any(order.cached for order in second.orders) and len(engine.generate_calls) == 4
    assert len(warnings_in(caplog)) == 1


# -- the command line ----------------------------------------------------------------------------


def test_cli_cache_stats_and_clear_with_a_corrupt_file() -> None:
    path = default_cache_path()
    garbage_header(path)
    stats = run_cli("cache", "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    report = json.loads(stats.stdout)
    assert report["entries"] == 0 and "is corrupt" in report["problem"]
    (warning,) = stats.stderr.strip().splitlines()
    assert warning.startswith(f"rmjudge: the verdict cache {path} is corrupt (file is not a database)")
    cleared = run_cli("cache", "clear", "--json")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["removed"] == 0 and cleared.stderr == ""
    after = run_cli("cache", "stats", "--json")
    assert after.returncode == 0 and after.stderr == ""
    assert json.loads(after.stdout)["entries"] == 0 and json.loads(after.stdout)["problem"] is None


COMPARE = ["--model", "MODEL", "--template", "reasoning", "--max-tokens", "0", "--order", "ab", "--json"]


def _compare(gemma_path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "a.txt").write_text("Paris is the capital of France.")
    (tmp_path / "b.txt").write_text("Lyon is the capital of France.")
    options = [str(gemma_path) if option == "MODEL" else option for option in COMPARE]
    return run_cli("compare", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "-q", "Capital of France?",
                   *options, cwd=ROOT)  # fmt: skip


@pytest.mark.model
@pytest.mark.parametrize("damage", ["garbage header", "damaged pages"])
def test_real_compare_with_a_corrupt_cache_warns_once_and_judges(
    gemma_path: Path, tmp_path: Path, damage: str
) -> None:
    path = default_cache_path()
    garbage_header(path) if damage == "garbage header" else damaged_pages(path)
    result = _compare(gemma_path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["winner"] in ("A", "B")
    (warning,) = result.stderr.strip().splitlines()
    assert warning.startswith(f"rmjudge: the verdict cache {path} is corrupt (")
    assert warning.endswith("run `rmjudge cache clear` (or delete the file); judging without it")


@pytest.mark.model
def test_real_compare_with_a_read_only_cache_directory_warns_once_and_judges(gemma_path: Path, tmp_path: Path) -> None:
    path = default_cache_path()
    path.parent.mkdir(parents=True)
    with read_only(path.parent):
        result = _compare(gemma_path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["winner"] in ("A", "B")
    (warning,) = result.stderr.strip().splitlines()
    assert warning == (
        f"rmjudge: the verdict cache {path} cannot be used (unable to open database file): make {path.parent} "
        "writable, or set RMJUDGE_HOME to another directory; judging without it"
    )
