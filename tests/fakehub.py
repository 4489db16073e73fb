"""A fake Hugging Face hub on 127.0.0.1 for the model tests: no test touches the real hub.

It answers the HTTP routes huggingface_hub 2.x and rmjudge really call:
- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (``?blobs=true``): model
  info with ``sha`` and ``siblings`` carrying size, blobId and the LFS sha256;
- ``GET /api/models?search=..&filter=gguf&expand=..``: the search listing (repos whose id contains
  the text, case-insensitively, each with its ``downloads`` and its files as ``siblings``);
- ``HEAD``/``GET /{repo}/resolve/{rev}/{file}``: the file, with ``X-Repo-Commit``, ``ETag`` (the
  LFS sha256, quoted), ``Content-Length``, ``Accept-Ranges`` and ``Range`` support. No Xet
  headers are sent, so clients take the plain HTTP path;
- errors the way the hub writes them: 404 with ``X-Error-Code: RepoNotFound`` /
  ``RevisionNotFound`` / ``EntryNotFound``, 401 with ``X-Error-Code: GatedRepo``.

Every request is recorded (method, path, headers) so tests can count them, and a download can be
made to drop its connection part-way through the body.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# --------------------------------------------------------------------------- a small real GGUF

_STRING, _UINT32, _ARRAY = 8, 4, 9


def _gguf_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def make_gguf(
    *,
    name: str = "RM-R1 Qwen2.5 Instruct 7B",
    architecture: str = "qwen2",
    file_type: int = 15,
    context: int = 32768,
    chat_template: str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
    size_label: str = "7.6B",
    padding: int = 2 * 1024 * 1024,
    salt: str = "",
) -> bytes:
    """A valid GGUF v3 header (0 tensors, a few key/values) followed by ``padding`` bytes.

    ``salt`` changes the padding so that two files never share a sha256.
    """
    kvs: list[tuple[str, int, bytes]] = [
        ("general.architecture", _STRING, _gguf_string(architecture)),
        ("general.name", _STRING, _gguf_string(name)),
        ("general.size_label", _STRING, _gguf_string(size_label)),
        ("general.file_type", _UINT32, struct.pack("<I", file_type)),
        (f"{architecture}.context_length", _UINT32, struct.pack("<I", context)),
        ("tokenizer.chat_template", _STRING, _gguf_string(chat_template)),
        ("tokenizer.ggml.tokens", _ARRAY, struct.pack("<IQ", _STRING, 2) + _gguf_string("a") + _gguf_string("b")),
    ]
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for key, value_type, value in kvs:
        header += _gguf_string(key) + struct.pack("<I", value_type) + value
    seed = hashlib.sha256(f"{name}|{file_type}|{salt}".encode()).digest()
    body = (seed * (padding // len(seed) + 1))[:padding]
    return header + body


# --------------------------------------------------------------------------- repos and files


@dataclass
class FakeFile:
    data: bytes
    lfs: bool = True
    served: bytes | None = None  # what the server sends instead of ``data`` (a corrupt mirror)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_id(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass
class FakeRepo:
    repo_id: str
    commits: dict[str, dict[str, FakeFile]]  # commit sha -> files; the last one added is "main"
    gated: bool = False
    downloads: int = 0
    refs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "main" not in self.refs:
            self.refs["main"] = list(self.commits)[-1]

    def commit_of(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


def commit_sha(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


class FakeHub:
    """``with FakeHub() as hub:`` serves ``hub.repos`` at ``hub.url`` until the block ends."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[Request] = []
        self.token: str | None = None  # the token that unlocks gated repos
        # file name -> byte offset: the next GET of it sends that many bytes, then drops the connection
        self.drop_at: dict[str, int] = {}
        self.drop_always = False  # drop on every GET, not just once
        self.ignore_range = False  # answer 200 with the whole file to a Range request, as some CDNs do
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- setup --------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, FakeFile],
        *,
        commit: str | None = None,
        gated: bool = False,
        downloads: int = 0,
    ) -> FakeRepo:
        """Add a repo (or a new commit of it, which becomes main); returns it. ``downloads`` is what
        the search listing reports, the hub's ranking."""
        sha = commit or commit_sha(f"{repo_id}|{len(self.repos)}|{sorted(files)}")
        repo = self.repos.get(repo_id)
        if repo is None:
            repo = self.repos[repo_id] = FakeRepo(repo_id, {sha: files}, gated=gated, downloads=downloads)
        else:
            repo.commits[sha] = files
            repo.refs["main"] = sha
        return repo

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        server = self._server
        # A short poll: shutdown() waits for it, once per test.
        self._thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.02), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, and cut the kept-alive connections too: a stopped hub answers nothing."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._connections.clear()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what happened ------------------------------------------------------------------------

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def downloads(self, filename: str | None = None) -> list[Request]:
        """The GET requests for file bytes (optionally of one file)."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and "/resolve/" in r.path and (filename is None or r.path.endswith("/" + filename))
        ]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as the real hub: every response needs a Content-Length

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest's output clean

    # -- helpers ------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, json.dumps({"error": message}).encode(), headers)

    def _authorised(self, repo: FakeRepo) -> bool:
        if not repo.gated:
            return True
        token = self.fake.token
        return token is not None and self.headers.get("Authorization") == f"Bearer {token}"

    # -- routes -------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        # Header names as "Range", "Authorization", whatever case the client sent them in.
        self.fake.record(Request(self.command, path, {k.title(): v for k, v in self.headers.items()}))
        segments = [s for s in path.split("/") if s]
        if segments[:2] == ["api", "models"]:
            if len(segments) == 2:
                return self._search(parse_qs(parts.query))
            repo_id = "/".join(segments[2:4])
            revision = segments[5] if len(segments) >= 6 and segments[4] == "revision" else "main"
            return self._model_info(repo_id, revision, parse_qs(parts.query))
        if len(segments) >= 5 and segments[2] == "resolve":
            return self._resolve("/".join(segments[:2]), segments[3], "/".join(segments[4:]))
        self._send(404, b"no such route")

    def _search(self, query: dict[str, list[str]]) -> None:
        search = (query.get("search") or [""])[0].lower()
        wants_gguf = "gguf" in query.get("filter", [])
        found = []
        for repo in self.fake.repos.values():
            files = repo.commits[repo.refs["main"]]
            if search not in repo.repo_id.lower() or (wants_gguf and not any(f.endswith(".gguf") for f in files)):
                continue
            found.append(
                {
                    "id": repo.repo_id,
                    "_id": repo.repo_id,
                    "downloads": repo.downloads,
                    "likes": 1,
                    "lastModified": "2025-06-01T00:00:00.000Z",
                    "siblings": [{"rfilename": name} for name in files],
                }
            )
        self._json(found)

    def _repo_at(self, repo_id: str, revision: str) -> tuple[FakeRepo, str] | None:
        """The repo and the commit ``revision`` names, or None after answering 404 as the hub does."""
        repo = self.fake.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        commit = repo.commit_of(revision)
        if commit is None:
            self._error(404, "RevisionNotFound", "Invalid rev id: " + revision)
            return None
        return repo, commit

    def _model_info(self, repo_id: str, revision: str, query: dict[str, list[str]]) -> None:
        found = self._repo_at(repo_id, revision)
        if found is None:
            return None
        repo, commit = found
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for name, file in repo.commits[commit].items():
            sibling: dict[str, Any] = {"rfilename": name}
            if blobs:
                sibling.update(size=len(file.data), blobId=file.blob_id)
                if file.lfs:
                    sibling["lfs"] = {"sha256": file.sha256, "size": len(file.data), "pointerSize": 134}
            siblings.append(sibling)
        self._json(
            {
                "id": repo_id,
                "_id": repo_id,
                "modelId": repo_id,
                "sha": commit,
                "private": False,
                "gated": "auto" if repo.gated else False,
                "tags": ["gguf"],
                "siblings": siblings,
            }
        )

    def _resolve(self, repo_id: str, revision: str, filename: str) -> None:
        found = self._repo_at(repo_id, revision)
        if found is None:
            return None
        repo, commit = found
        if not self._authorised(repo):
            return self._error(401, "GatedRepo", "Access to model " + repo_id + " is restricted.")
        file = repo.commits[commit].get(filename)
        if file is None:
            return self._error(404, "EntryNotFound", "Entry not found", commit=commit)
        body = file.served if file.served is not None else file.data
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{file.sha256 if file.lfs else file.blob_id}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if file.lfs:
            headers["X-Linked-Etag"] = f'"{file.sha256}"'
            headers["X-Linked-Size"] = str(len(file.data))
        status, start = 200, 0
        range_header = "" if self.fake.ignore_range else self.headers.get("Range", "")
        if range_header.startswith("bytes=") and range_header.endswith("-"):
            start = int(range_header[len("bytes=") : -1])
            if start >= len(body):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        payload = body[start:]
        drop = self.fake.drop_at.get(filename.rsplit("/", 1)[-1])
        if self.command == "GET" and drop is not None and drop > start:
            if not self.fake.drop_always:
                del self.fake.drop_at[filename.rsplit("/", 1)[-1]]
            # Promise the whole body, send part of it, then cut the connection.
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: drop - start])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        return self._send(status, payload, headers)
