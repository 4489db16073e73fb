"""Models: registry, resolution, download (against a fake hub on 127.0.0.1), cache, removal."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rmjudge import models, system
from rmjudge.errors import ModelError, UsageError
from rmjudge.models import download, hashing, naming

try:
    from tests.fakehub import FakeFile, FakeHub, commit_sha, make_gguf
except ImportError:  # tests/ is not a package: pytest put the folder itself on sys.path
    from fakehub import FakeFile, FakeHub, commit_sha, make_gguf  # type: ignore[no-redef]

REPO = "mradermacher/RM-R1-Qwen2.5-Instruct-7B-GGUF"
REPO_I1 = "mradermacher/RM-R1-Qwen2.5-Instruct-7B-i1-GGUF"
BASE = "RM-R1-Qwen2.5-Instruct-7B"
Q4 = f"{BASE}.Q4_K_M.gguf"
Q8 = f"{BASE}.Q8_0.gguf"
DEAD_ENDPOINT = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Own HF_HOME and RMJUDGE_HOME, no token, no offline flag, and no way out of 127.0.0.1."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("RMJUDGE_HOME", str(tmp_path / "rmjudge"))
    monkeypatch.setenv("HF_ENDPOINT", DEAD_ENDPOINT)
    for name in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "RMJUDGE_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub read these at import: a token file or the agent registry fetch would leak out.
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)
    monkeypatch.setattr(download, "_RETRY_WAIT_S", 0.0)

    real_getaddrinfo = socket.getaddrinfo

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", b"127.0.0.1"):
            raise AssertionError(f"a test tried to reach {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    yield
    huggingface_hub.close_session()  # no pooled connection outlives its fake hub


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)  # read at call time, after huggingface_hub's import
        yield fake


def cache_root() -> Path:
    return Path(os.environ["HF_HOME"]) / "hub"


def repo_dir(repo: str) -> Path:
    return cache_root() / ("models--" + repo.replace("/", "--"))


def leftovers(repo: str) -> list[str]:
    """Files (and links) in a repo's cache folder other than refs: what a failed download left."""
    root = repo_dir(repo)
    if not root.exists():
        return []
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if (p.is_file() or p.is_symlink()) and "refs" not in p.parts
    )


def subprocess_env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    """Environment for a real rmjudge process: the fake hub, no token file, no telemetry."""
    return {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_TOKEN_PATH": str(tmp_path / "no-token"),
    }


def add_7b(hub: FakeHub, *, i1: bool = False) -> dict[str, FakeFile]:
    files = {
        Q4: FakeFile(make_gguf(file_type=15)),
        Q8: FakeFile(make_gguf(file_type=7)),
        "README.md": FakeFile(b"# quants\n", lfs=False),
    }
    hub.add_repo(REPO, files)
    if i1:
        hub.add_repo(REPO_I1, {f"{BASE}.i1-Q4_K_M.gguf": FakeFile(make_gguf(salt="i1"))})
    return files


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_six_checkpoints_with_paper_scores() -> None:
    data = models.registry()
    assert data["default"] == "rm-r1-qwen-7b"
    assert sorted(data["models"]) == sorted(
        f"rm-r1-{kind}-{size}" for kind in ("qwen", "deepseek") for size in ("7b", "14b", "32b")
    )
    for alias, entry in data["models"].items():
        assert entry["family"] == ("reasoning" if "deepseek" in alias else "instruct")
        assert entry["gguf_repos"][0] == f"mradermacher/{entry['upstream'].split('/')[1]}-GGUF"
        scores = entry["scores"]
        mean = (scores["rewardbench"] + scores["rm_bench"] + scores["rmb"]) / 3
        assert abs(mean - scores["average"]) < 0.06  # the paper's own average column agrees
    assert data["models"]["rm-r1-deepseek-32b"]["scores"]["rm_bench"] == 83.9


def test_registry_override_adds_and_changes_aliases(hub: FakeHub) -> None:
    config = Path(os.environ["RMJUDGE_HOME"]) / "config"
    config.mkdir(parents=True)
    (config / "registry.json").write_text(
        json.dumps(
            {
                "models": {
                    "my-judge": {"family": "instruct", "gguf_repos": ["me/My-Judge-GGUF"]},
                    "rm-r1-qwen-32b": None,
                }
            }
        )
    )
    hub.add_repo("me/My-Judge-GGUF", {"my-judge.Q4_K_M.gguf": FakeFile(make_gguf(salt="mine"))})
    assert "rm-r1-qwen-32b" not in models.registry()["models"]
    resolved = models.resolve_model("my-judge", progress=False)
    assert resolved.alias == "my-judge" and resolved.repo == "me/My-Judge-GGUF"

    (config / "registry.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"registry\.json"):
        models.registry()


# --------------------------------------------------------------------------- quants


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("RM-R1-Qwen2.5-Instruct-7B.Q4_K_M.gguf", "Q4_K_M"),
        ("RM-R1-Qwen2.5-Instruct-7B.i1-IQ4_XS.gguf", "IQ4_XS"),
        ("model-Q8_0.gguf", "Q8_0"),
        ("model.f16.gguf", "F16"),
        ("Qwen2.5-7B-BF16.gguf", "BF16"),
        ("no-quant-here.gguf", None),
    ],
)
def test_quant_of(name: str, quant: str | None) -> None:
    assert models.quant_of(name) == quant


def test_quant_match_is_whole_token() -> None:
    assert naming.matches_quant("x.Q4_K_M.gguf", "q4_k_m")
    assert not naming.matches_quant("x.Q4_K_M.gguf", "Q4_K")
    assert not naming.matches_quant("x.IQ4_XS.gguf", "Q4_XS")
    assert naming.matches_quant("x.i1-Q4_K_M.gguf", "i1-Q4_K_M")


# --------------------------------------------------------------------------- pulling


def test_pull_by_alias_picks_the_requested_quant(hub: FakeHub) -> None:
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    files = add_7b(hub)
    resolved = models.pull_model("rm-r1-qwen-7b", quant="q8_0", progress=False)
    assert resolved.filename == Q8 and resolved.quant == "Q8_0" and resolved.repo == REPO
    assert resolved.path.read_bytes() == files[Q8].data
    assert resolved.sha256 == files[Q8].sha256
    assert resolved.revision == hub.repos[REPO].refs["main"]
    # The huggingface_hub cache layout: other tools find the same file.
    assert try_to_load_from_cache(REPO, Q8, cache_dir=cache_root()) == str(resolved.path)
    assert (repo_dir(REPO) / "refs" / "main").read_text() == resolved.revision
    assert [r.repo_id for r in scan_cache_dir(cache_root()).repos] == [REPO]
    # No quant: what is on disk serves, rather than a second download.
    before = len(hub.requests)
    assert models.resolve_model("rm-r1-qwen-7b").path == resolved.path and len(hub.requests) == before
    # Asked for: the default quant, Q4_K_M, joins it; once both are there, no quant means Q4_K_M.
    default = models.resolve_model("rm-r1-qwen-7b", quant="Q4_K_M", progress=False)
    assert default.filename == Q4 and default.path.read_bytes() == files[Q4].data
    assert models.resolve_model("rm-r1-qwen-7b").path == default.path


def test_resolved_model_to_dict_is_what_pull_json_prints(hub: FakeHub) -> None:
    files = add_7b(hub)
    resolved = models.pull_model("rm-r1-qwen-7b", progress=False)
    assert resolved.to_dict() == {
        "alias": "rm-r1-qwen-7b",
        "repo": REPO,
        "filename": Q4,
        "revision": hub.repos[REPO].refs["main"],
        "quant": "Q4_K_M",
        "path": str(resolved.path),
        "size": len(files[Q4].data),
        "sha256": files[Q4].sha256,
        "note": None,  # set only when a hub search found the repository (see test_renamed_registry_repos_...)
    }
    assert json.loads(json.dumps(resolved.to_dict())) == resolved.to_dict()


def test_a_repo_that_404s_moves_to_the_next(hub: FakeHub) -> None:
    hub.add_repo(REPO_I1, {f"{BASE}.i1-Q4_K_M.gguf": FakeFile(make_gguf(salt="i1"))})
    resolved = models.resolve_model("rm-r1-qwen-7b", progress=False)
    assert resolved.repo == REPO_I1 and resolved.quant == "Q4_K_M"
    asked = [r.path for r in hub.requests if r.path.startswith("/api/models/")]
    assert asked == [f"/api/models/{REPO}", f"/api/models/{REPO_I1}"]


def test_quant_not_found_lists_the_quants_that_exist(hub: FakeHub) -> None:
    add_7b(hub, i1=True)
    with pytest.raises(ModelError) as error:
        models.resolve_model("rm-r1-qwen-7b", quant="Q2_K", progress=False)
    message = str(error.value)
    assert "no Q2_K file" in message and "Q4_K_M, Q8_0" in message and "--quant" in message
    assert hub.downloads() == []


def test_hf_uri_with_file_and_revision(hub: FakeHub) -> None:
    old_commit, new_commit = commit_sha("old"), commit_sha("new")
    old = FakeFile(make_gguf(salt="old"))
    new = FakeFile(make_gguf(salt="new"))
    hub.add_repo("someone/Judge-GGUF", {"judge.Q4_K_M.gguf": old}, commit=old_commit)
    hub.add_repo("someone/Judge-GGUF", {"judge.Q4_K_M.gguf": new}, commit=new_commit)

    pinned = models.resolve_model(f"hf://someone/Judge-GGUF/judge.Q4_K_M.gguf@{old_commit}", progress=False)
    assert pinned.revision == old_commit and pinned.path.read_bytes() == old.data
    assert pinned.path.parent.name == old_commit
    assert hub.requests[0].path == f"/api/models/someone/Judge-GGUF/revision/{old_commit}"

    # No revision: what is on disk serves, even a pinned commit; a pull asks the hub for main.
    assert models.resolve_model("hf://someone/Judge-GGUF").path == pinned.path
    latest = models.pull_model("hf://someone/Judge-GGUF", progress=False)  # no file: by quant
    assert latest.revision == new_commit and latest.path.read_bytes() == new.data
    assert models.resolve_model("hf://someone/Judge-GGUF").path == latest.path  # main's snapshot first
    assert models.resolve_model(f"hf://someone/Judge-GGUF@{old_commit}").path == pinned.path

    with pytest.raises(UsageError, match="two revisions"):
        models.resolve_model(f"hf://someone/Judge-GGUF@{old_commit}", revision="main")
    with pytest.raises(UsageError, match="hf://owner/repo"):
        models.resolve_model("hf://only-owner")


def test_resume_after_a_cut_connection(hub: FakeHub) -> None:
    files = add_7b(hub)
    hub.drop_at[Q4] = 700_000
    resolved = models.pull_model("rm-r1-qwen-7b", progress=False)
    gets = hub.downloads(Q4)
    assert len(gets) == 2 and "Range" not in gets[0].headers
    start = int(gets[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 700_000  # the second request asked only for what was missing
    assert resolved.path.read_bytes() == files[Q4].data
    assert hashlib.sha256(resolved.path.read_bytes()).hexdigest() == resolved.sha256 == files[Q4].sha256


def test_an_interrupted_download_resumes_on_the_next_run(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    files = add_7b(hub)
    monkeypatch.setattr(download, "_RETRIES", 0)  # give up at the first cut, as a Ctrl-C would
    hub.drop_at[Q4] = 700_000
    with pytest.raises(ModelError, match="run the same command again to resume"):
        models.pull_model("rm-r1-qwen-7b", progress=False)
    partial = repo_dir(REPO) / "blobs" / f"{files[Q4].sha256}.incomplete"
    assert 0 < partial.stat().st_size <= 700_000
    assert not (repo_dir(REPO) / "snapshots").exists()  # nothing half-written is visible as a model

    kept = partial.stat().st_size
    resolved = models.pull_model("rm-r1-qwen-7b", progress=False)
    assert hub.downloads(Q4)[-1].headers["Range"] == f"bytes={kept}-"
    assert resolved.path.read_bytes() == files[Q4].data
    assert not partial.exists()


class RecordedProgress:
    """A ``rmjudge.progress.Progress`` that remembers what the downloader reported."""

    def __init__(self) -> None:
        self.tasks: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def __call__(self, total: int | None, **options: Any) -> Iterator[Callable[..., None]]:
        task = {"total": total, **options, "advances": []}
        self.tasks.append(task)
        yield lambda advance=0, **_: task["advances"].append(advance)


def test_the_download_reports_its_progress(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The core counts bytes and draws nothing: the caller's Progress hears the total, what was already
    on disk, and every chunk."""
    files = add_7b(hub)
    monkeypatch.setattr(download, "_RETRIES", 0)
    hub.drop_at[Q4] = 700_000
    first = RecordedProgress()
    with pytest.raises(ModelError):
        models.pull_model("rm-r1-qwen-7b", progress=first)
    (task,) = first.tasks
    assert task["total"] == len(files[Q4].data) and task["unit"] == "bytes" and task["description"] == Q4
    assert task["completed"] == 0 and 0 < sum(task["advances"]) <= 700_000
    kept = sum(task["advances"])

    second = RecordedProgress()
    models.pull_model("rm-r1-qwen-7b", progress=second)
    (task,) = second.tasks
    assert task["completed"] == kept and kept + sum(task["advances"]) == len(files[Q4].data)
    models.pull_model("rm-r1-qwen-7b", progress=second)  # on disk already: nothing to report
    assert len(second.tasks) == 1


def test_a_server_that_ignores_range_restarts_cleanly(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    files = add_7b(hub)
    monkeypatch.setattr(download, "_RETRIES", 0)
    hub.drop_at[Q4] = 500_000
    with pytest.raises(ModelError):
        models.pull_model("rm-r1-qwen-7b", progress=False)
    hub.ignore_range = True
    resolved = models.pull_model("rm-r1-qwen-7b", progress=False)
    assert resolved.path.read_bytes() == files[Q4].data


def test_wrong_hash_is_rejected_and_nothing_is_kept(hub: FakeHub) -> None:
    good = make_gguf()
    bad = good[:-10] + b"corrupted!"
    hub.add_repo(REPO, {Q4: FakeFile(good, served=bad)})
    for _ in range(2):  # the second try finds nothing cached either
        with pytest.raises(ModelError, match="failed its check"):
            models.resolve_model("rm-r1-qwen-7b", progress=False)
        assert leftovers(REPO) == []
    assert len(hub.downloads(Q4)) == 2


def test_a_download_that_is_not_gguf_is_deleted(hub: FakeHub) -> None:
    hub.add_repo(REPO, {Q4: FakeFile(b"<html>not a model</html>" * 1000)})
    with pytest.raises(ModelError, match="not a valid GGUF"):
        models.resolve_model("rm-r1-qwen-7b", progress=False)
    assert leftovers(REPO) == []


def test_repo_not_found(hub: FakeHub) -> None:
    with pytest.raises(ModelError, match="repository nobody/Missing-GGUF not found"):
        models.resolve_model("hf://nobody/Missing-GGUF", progress=False)
    with pytest.raises(ModelError) as error:
        models.resolve_model("rm-r1-deepseek-14b", progress=False)
    assert "no GGUF repository of rm-r1-deepseek-14b" in str(error.value)
    assert "mradermacher/RM-R1-DeepSeek-Distilled-Qwen-14B-i1-GGUF" in str(error.value)
    assert "registry.json" in str(error.value)


def test_gated_repo_asks_for_a_token(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_gguf(salt="gated")
    hub.add_repo("org/Gated-GGUF", {"gated.Q4_K_M.gguf": FakeFile(data)}, gated=True)
    hub.token = "hf_fake_token"
    with pytest.raises(ModelError) as error:
        models.resolve_model("hf://org/Gated-GGUF", progress=False)
    assert "gated" in str(error.value) and "HF_TOKEN" in str(error.value) and "license" in str(error.value)
    assert leftovers("org/Gated-GGUF") == []

    monkeypatch.setenv("HF_TOKEN", "hf_fake_token")
    assert models.resolve_model("hf://org/Gated-GGUF", progress=False).path.read_bytes() == data
    assert hub.downloads()[-1].headers["Authorization"] == "Bearer hf_fake_token"


def test_disk_space_is_checked_before_downloading(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    add_7b(hub)
    monkeypatch.setattr(download.shutil, "disk_usage", lambda _: shutil_usage(free=1_000))
    with pytest.raises(ModelError, match=r"need 2\.1 MB free in .*blobs, have 0\.0 MB"):
        models.resolve_model("rm-r1-qwen-7b", progress=False)
    assert hub.downloads() == []


def shutil_usage(free: int) -> Any:
    import shutil

    return shutil._ntuple_diskusage(total=10**12, used=10**12 - free, free=free)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- renamed repositories

RENAMED = "bartowski/gaotang_RM-R1-Qwen2.5-Instruct-7B-GGUF"  # what a registry repo may have become
SMALL = "someone/RM-R1-Qwen2.5-Instruct-7B-GGUF"
MY_REPO = "me/RM-R1-Qwen2.5-Instruct-7B-Q4_K_M-GGUF"  # gguf-my-repo's naming


def add_renamed(hub: FakeHub) -> None:
    """The registry's repositories are gone; three others quantize the checkpoint, one only looks like it."""
    hub.add_repo(RENAMED, {f"gaotang_{BASE}-{q}.gguf": FakeFile(make_gguf(salt=q)) for q in ("Q4_K_M", "Q8_0")},
                 downloads=900)  # fmt: skip
    hub.add_repo(SMALL, {f"{BASE}.{q}.gguf": FakeFile(make_gguf(salt="s" + q)) for q in ("Q6_K", "Q8_0")}, downloads=40)
    hub.add_repo(MY_REPO, {"rm-r1-qwen2.5-instruct-7b-q4_k_m.gguf": FakeFile(make_gguf(salt="me"))}, downloads=70)
    hub.add_repo("fan/RM-R1-Qwen2.5-Instruct-7B-abliterated-GGUF",  # another model: never taken
                 {"a.Q6_K.gguf": FakeFile(make_gguf(salt="ab"))}, downloads=10**6)  # fmt: skip


def test_renamed_registry_repos_are_found_by_a_hub_search(hub: FakeHub) -> None:
    add_renamed(hub)
    resolved = models.resolve_model("rm-r1-qwen-7b")
    assert resolved.repo == RENAMED and resolved.quant == "Q4_K_M" and resolved.alias == "rm-r1-qwen-7b"
    assert resolved.path.read_bytes() == hub.repos[RENAMED].commits[hub.repos[RENAMED].refs["main"]][
        resolved.filename or ""
    ].data
    # One line that says what was missing and what was taken instead, and why that one.
    note = resolved.note or ""
    assert "\n" not in note and REPO in note and REPO_I1 in note and RENAMED in note and "900 downloads" in note
    assert resolved.to_dict()["note"] == note
    searches = [r for r in hub.requests if r.path == "/api/models"]
    assert len(searches) == 1

    # The quant decides before the downloads do: only SMALL has Q6_K.
    q6 = models.resolve_model("rm-r1-qwen-7b", quant="Q6_K")
    assert q6.repo == SMALL and q6.quant == "Q6_K" and "40 downloads" in (q6.note or "")

    # Once pulled, the alias is served from disk with no hub at all, and listed and removed as the alias.
    hub.stop()
    again = models.resolve_model("rm-r1-qwen-7b")
    assert again.path == resolved.path and again.repo == RENAMED and again.note is None
    assert models.resolve_model("rm-r1-qwen-7b", quant="Q6_K").path == q6.path
    rows = [r for r in models.list_models() if r.alias == "rm-r1-qwen-7b"]
    assert sorted((r.repo, r.quant) for r in rows) == [(RENAMED, "Q4_K_M"), (SMALL, "Q6_K")]
    assert not [r for r in models.list_models() if r.alias is None]
    assert sorted(p.name for p in models.remove_model("rm-r1-qwen-7b")) == sorted([resolved.path.name, q6.path.name])
    assert not repo_dir(RENAMED).exists() and not repo_dir(SMALL).exists()


def test_a_search_without_the_quant_lists_what_exists(hub: FakeHub) -> None:
    add_renamed(hub)
    with pytest.raises(ModelError) as error:
        models.resolve_model("rm-r1-qwen-7b", quant="Q2_K")
    message = str(error.value)
    assert "\n" not in message and "holds Q2_K" in message and "--quant" in message
    assert f"{RENAMED} (Q4_K_M, Q8_0)" in message and f"{SMALL} (Q6_K, Q8_0)" in message and MY_REPO in message
    assert "abliterated" not in message
    assert hub.downloads() == []


def test_a_search_that_finds_nothing_says_so(hub: FakeHub) -> None:
    hub.add_repo("fan/RM-R1-Qwen2.5-Instruct-7B-abliterated-GGUF", {"a.Q4_K_M.gguf": FakeFile(make_gguf(salt="ab"))})
    with pytest.raises(ModelError) as error:
        models.resolve_model("rm-r1-qwen-7b")
    message = str(error.value)
    assert "no GGUF repository of rm-r1-qwen-7b" in message and REPO in message and "registry.json" in message
    assert "a search for RM-R1-Qwen2.5-Instruct-7B found none" in message
    assert hub.downloads() == []


def test_search_is_not_used_while_a_registry_repo_exists(hub: FakeHub) -> None:
    """A registry repository without the quant is an answer (the quants it has), not a reason to search."""
    add_7b(hub)
    add_renamed(hub)
    with pytest.raises(ModelError, match="no Q6_K file for rm-r1-qwen-7b"):
        models.resolve_model("rm-r1-qwen-7b", quant="Q6_K")
    assert models.resolve_model("rm-r1-qwen-7b").repo == REPO
    assert not [r for r in hub.requests if r.path == "/api/models"]


# --------------------------------------------------------------------------- offline


def test_a_pulled_model_resolves_without_any_request(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    add_7b(hub)
    pulled = models.resolve_model("rm-r1-qwen-7b", progress=False)
    before = len(hub.requests)
    again = models.resolve_model("rm-r1-qwen-7b", progress=False)
    assert again == pulled and len(hub.requests) == before  # on disk: no hub call at all

    hub.stop()
    assert models.resolve_model("rm-r1-qwen-7b").path == pulled.path
    assert models.pull_model("rm-r1-qwen-7b", progress=False).path == pulled.path  # refresh fails: keeps the copy
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.resolve_model("rm-r1-qwen-7b").path == pulled.path
    assert models.resolve_model(f"hf://{REPO}/{Q4}").path == pulled.path


def test_a_missing_model_without_network_gets_one_line() -> None:
    with pytest.raises(ModelError) as error:
        models.resolve_model("rm-r1-qwen-14b", quant="Q8_0")
    message = str(error.value)
    assert "\n" not in message
    assert "cannot reach the hub" in message
    assert "`rmjudge models pull rm-r1-qwen-14b --quant Q8_0`" in message and "--model PATH.gguf" in message


def test_a_missing_model_with_hf_hub_offline_says_so(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    add_7b(hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE is set and rm-r1-qwen-7b is not on disk"):
        models.resolve_model("rm-r1-qwen-7b")
    assert hub.requests == []


# --------------------------------------------------------------------------- specs, local files


def test_unknown_alias_suggests_a_near_name() -> None:
    with pytest.raises(ModelError, match="did you mean rm-r1-qwen-7b"):
        models.resolve_model("rm-r1-qwen7b")
    with pytest.raises(ModelError, match="rm-r1-deepseek-14b"):
        models.resolve_model("deepseek-14b")


def test_a_bad_model_value_names_where_it_was_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = f"{tmp_path / '.rmjudge.toml'}: model"
    with pytest.raises(ModelError) as error:
        models.check_model_spec("rm-r1-qwen7b", where)
    assert str(error.value).startswith(f"{where}: unknown model 'rm-r1-qwen7b': did you mean rm-r1-qwen-7b ")
    with pytest.raises(ModelError, match=r"\.rmjudge\.toml: model: model file not found: judge\.gguf"):
        models.check_model_spec("judge.gguf", where)
    with pytest.raises(UsageError, match=r"\.rmjudge\.toml: model: bad model 'hf://x'"):
        models.check_model_spec("hf://x", where)
    models.check_model_spec("rm-r1-qwen-7b", where)  # known alias, not on disk: fine, nothing is fetched
    models.check_model_spec("hf://someone/Judge-GGUF", where)

    monkeypatch.setenv("RMJUDGE_MODEL", "rm-r1-qwen7b")
    with pytest.raises(ModelError, match=r"^RMJUDGE_MODEL: unknown model 'rm-r1-qwen7b'"):
        models.resolve_model(None)
    with pytest.raises(ModelError, match=r"^unknown model 'nope'"):
        models.resolve_model("nope")  # given on the command line: the option is where


def test_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "judge.Q4_K_M.gguf"
    good.write_bytes(make_gguf(padding=1000))
    resolved = models.resolve_model(str(good))
    assert resolved.path == good and resolved.quant == "Q4_K_M" and resolved.repo is None
    monkeypatch.setenv("RMJUDGE_MODEL", str(good))
    assert models.resolve_model(None).path == good

    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(make_gguf(padding=0)[:60])
    with pytest.raises(ModelError, match="truncated"):
        models.resolve_model(str(truncated))
    corrupt = tmp_path / "noise.gguf"
    corrupt.write_bytes(os.urandom(4096))
    with pytest.raises(ModelError, match="not a GGUF"):
        models.resolve_model(str(corrupt))
    with pytest.raises(ModelError, match="model file not found"):
        models.resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match="is a directory"):
        models.resolve_model(str(tmp_path))


def test_file_sha256_is_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"x" * 10_000)
    real = hashlib.sha256(path.read_bytes()).hexdigest()
    assert models.file_sha256(path) == real
    memo_file = Path(os.environ["RMJUDGE_HOME"]) / "cache" / "sha256.json"
    memo = json.loads(memo_file.read_text())
    (key,) = memo
    memo_file.write_text(json.dumps({key: "remembered"}))
    assert models.file_sha256(path) == "remembered"  # read from the memo, not the file
    os.utime(path, ns=(1, 1))  # another mtime: the memo entry no longer applies
    assert models.file_sha256(path) == real


def test_a_pulled_file_needs_no_hashing(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = add_7b(hub)[Q4].sha256
    resolved = models.resolve_model("rm-r1-qwen-7b", progress=False)

    def no_hashing(*_: Any) -> Any:
        raise AssertionError("hashed the file again")

    monkeypatch.setattr(hashing.hashlib, "sha256", no_hashing)
    assert models.file_sha256(resolved.path) == expected
    assert models.resolve_model("rm-r1-qwen-7b").sha256 == expected  # from the blob's name


# --------------------------------------------------------------------------- list, info, rm, search


def test_list_and_remove(hub: FakeHub, tmp_path: Path) -> None:
    add_7b(hub)
    hub.add_repo("someone/Other-GGUF", {"other.Q5_K_M.gguf": FakeFile(make_gguf(salt="other"))})
    models.pull_model("rm-r1-qwen-7b", progress=False)
    models.pull_model("rm-r1-qwen-7b", quant="Q8_0", progress=False)
    other = models.pull_model("hf://someone/Other-GGUF", quant="Q5_K_M", progress=False)

    rows = models.list_models()
    mine = [r for r in rows if r.alias == "rm-r1-qwen-7b"]
    assert sorted(r.quant or "" for r in mine) == ["Q4_K_M", "Q8_0"]
    assert all(r.path and r.path.is_file() and r.size == r.path.stat().st_size and r.default for r in mine)
    empty = next(r for r in rows if r.alias == "rm-r1-deepseek-32b")
    assert empty.path is None and empty.scores["rm_bench"] == 83.9 and empty.family == "reasoning"
    extra = next(r for r in rows if r.alias is None)
    assert extra.spec == "hf://someone/Other-GGUF/other.Q5_K_M.gguf" and extra.path == other.path
    assert json.loads(json.dumps([r.to_dict() for r in rows]))  # JSON-ready

    removed = models.remove_model("rm-r1-qwen-7b", quant="Q8_0")
    assert [p.name for p in removed] == [Q8]
    assert [r.quant for r in models.list_models() if r.alias == "rm-r1-qwen-7b"] == ["Q4_K_M"]
    assert len(list((repo_dir(REPO) / "blobs").iterdir())) == 1  # its blob went too

    models.remove_model("rm-r1-qwen-7b")
    assert not repo_dir(REPO).exists()
    assert models.remove_model("rm-r1-qwen-7b") == []

    models.remove_model(str(other.path))
    assert not repo_dir("someone/Other-GGUF").exists()
    outside = tmp_path / "mine.gguf"
    outside.write_bytes(make_gguf(padding=10))
    with pytest.raises(ModelError, match="not in the model cache"):
        models.remove_model(str(outside))
    assert outside.exists()


def test_model_info_reads_the_gguf(hub: FakeHub, tmp_path: Path) -> None:
    add_7b(hub)
    with pytest.raises(ModelError, match="rmjudge models pull rm-r1-qwen-7b"):
        models.model_info("rm-r1-qwen-7b")  # info never downloads
    models.pull_model("rm-r1-qwen-7b", progress=False)
    info = models.model_info("rm-r1-qwen-7b")
    assert info["architecture"] == "qwen2" and info["quant"] == "Q4_K_M" and info["context_length"] == 32768
    assert info["parameters"] == "7.6B" and info["template_family"] == "instruct"
    assert info["upstream"] == "gaotang/RM-R1-Qwen2.5-Instruct-7B" and info["scores"]["average"] == 73.9

    deepseek = tmp_path / "ds.gguf"
    deepseek.write_bytes(
        make_gguf(name="RM-R1 DeepSeek Distilled Qwen 7B", file_type=7, chat_template="<｜User｜>{x}<｜Assistant｜>")
    )
    info = models.model_info(str(deepseek))
    assert info["template_family"] == "reasoning" and info["quant"] == "Q8_0" and info["alias"] is None


def test_search_asks_the_hub_for_gguf_repos(hub: FakeHub) -> None:
    add_7b(hub, i1=True)
    hub.repos[REPO].downloads = 50
    hub.add_repo("bartowski/gaotang_RM-R1-DeepSeek-Distilled-Qwen-14B-GGUF", {"x-Q6_K.gguf": FakeFile(b"x")})
    hub.add_repo("someone/unrelated-GGUF", {"u.Q4_K_M.gguf": FakeFile(b"u")})
    hub.add_repo("gaotang/RM-R1-Qwen2.5-Instruct-7B", {"model.safetensors": FakeFile(b"s")})
    found = models.search_models()
    assert [r.repo for r in found] == [REPO, "bartowski/gaotang_RM-R1-DeepSeek-Distilled-Qwen-14B-GGUF", REPO_I1]
    assert found[0].alias == "rm-r1-qwen-7b" and found[0].in_registry and found[0].quants == ["Q4_K_M", "Q8_0"]
    # Not in the registry, but recognisably a quantization of one of its checkpoints.
    assert found[1].alias == "rm-r1-deepseek-14b" and not found[1].in_registry and found[1].quants == ["Q6_K"]
    (query,) = [r.path for r in hub.requests if r.path == "/api/models"]
    assert query


def test_search_without_network_says_so() -> None:
    with pytest.raises(ModelError, match="needs the network"):
        models.search_models()


def test_memory_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.gguf"
    path.write_bytes(b"x" * 5_000_000)
    monkeypatch.setattr(system, "available_memory", lambda: 1_000_000)
    warning = models.memory_warning(path)
    assert warning is not None and "5.0 MB" in warning and "1.0 MB" in warning and "\n" not in warning
    monkeypatch.setattr(system, "available_memory", lambda: 10**12)
    assert models.memory_warning(path) is None
    monkeypatch.undo()
    assert (system.available_memory() or 1) > 0


# --------------------------------------------------------------------------- the CLI


def test_models_commands(hub: FakeHub) -> None:
    from typer.testing import CliRunner

    from rmjudge.cli import app

    files = add_7b(hub)
    runner = CliRunner()
    pulled = runner.invoke(app, ["models", "pull", "rm-r1-qwen-7b", "--quant", "Q8_0", "--json"])
    assert pulled.exit_code == 0, pulled.output
    data = json.loads(pulled.stdout)
    assert data["quant"] == "Q8_0" and data["sha256"] == files[Q8].sha256 and Path(data["path"]).is_file()

    listed = [json.loads(line) for line in runner.invoke(app, ["models", "list", "--json"]).stdout.splitlines()]
    assert [row["alias"] for row in listed if row["path"]] == ["rm-r1-qwen-7b"]

    info = json.loads(runner.invoke(app, ["models", "info", "rm-r1-qwen-7b", "--json"]).stdout)
    assert info["quant"] == "Q8_0" and info["architecture"] == "qwen2"

    found = runner.invoke(app, ["models", "search", "--json"])
    assert json.loads(found.stdout.splitlines()[0])["repo"] == REPO

    removed = runner.invoke(app, ["models", "rm", "rm-r1-qwen-7b", "--json"])
    assert json.loads(removed.stdout) == {"removed": [data["path"]]}

    unknown = runner.invoke(app, ["models", "pull", "rm-r1-qwen7b"])
    assert unknown.exit_code == 4
    assert unknown.stderr.count("\n") == 1 and "did you mean rm-r1-qwen-7b" in unknown.stderr


def test_a_fresh_process_reads_the_environment(hub: FakeHub, tmp_path: Path) -> None:
    """The real CLI in its own process: HF_ENDPOINT/HF_HOME set before huggingface_hub is imported."""
    import subprocess
    import sys

    files = add_7b(hub)
    env = subprocess_env(hub, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "rmjudge", "models", "pull", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sha256"] == files[Q4].sha256
    hub.stop()
    env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "rmjudge", "models", "info", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["quant"] == "Q4_K_M"


@pytest.mark.model
def test_compare_by_alias_pulls_verifies_caches_and_judges(hub: FakeHub, tmp_path: Path, gemma_path: Path) -> None:
    """The issue's 'done when': a real GGUF served by the fake hub, pulled by alias on first use and
    judged; the second run is served from disk with no request to the hub at all."""
    import subprocess
    import sys

    gemma = FakeFile(gemma_path.read_bytes())
    hub.add_repo("tests/gemma-3-270m-GGUF", {"gemma-3-270m.Q4_K_M.gguf": gemma})
    config = Path(os.environ["RMJUDGE_HOME"]) / "config"
    config.mkdir(parents=True)
    (config / "registry.json").write_text(
        json.dumps({"models": {"gemma-judge": {"family": "instruct", "gguf_repos": ["tests/gemma-3-270m-GGUF"]}}})
    )
    examples = Path(__file__).resolve().parent.parent / "examples"
    command = [sys.executable, "-m", "rmjudge", "compare", str(examples / "a.txt"), str(examples / "b.txt")]
    command += ["--model", "gemma-judge", "--max-tokens", "4", "--json"]
    env = subprocess_env(hub, tmp_path)

    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    judgment = json.loads(first.stdout)
    assert judgment["winner"] in ("A", "B", "tie") and len(judgment["orders"]) == 2
    assert judgment["model"]["sha256"] == gemma.sha256  # verified against the hub's LFS hash
    assert len(hub.downloads("gemma-3-270m.Q4_K_M.gguf")) == 1

    requests_before = len(hub.requests)
    hub.stop()  # no hub at all now
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["winner"] == judgment["winner"]
    assert len(hub.requests) == requests_before
