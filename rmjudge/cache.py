"""Stored verdicts: a SQLite file (WAL mode) in the user cache dir, shared by every command.

A key is the sha256 of everything that determines one order's judgment (model file hash,
template hash, rendered messages, sampling, budget, parser version), so a hit is exactly the
judgment the model would give again. Several processes may read and write at once.

The cache is an optimisation and never stops a command: when its file cannot be opened, read or
written (corrupt, a read-only directory, a full disk), the first use logs one warning that names
the file and what to do, and judging goes on without it. ``clear`` removes even a corrupt file.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rmjudge.errors import UsageError
from rmjudge.paths import user_cache_dir

# Without a handler configured, logging prints a warning's message alone on stderr: one line.
log = logging.getLogger("rmjudge.cache")


def cache_key(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(inputs, option=orjson.OPT_SORT_KEYS)).hexdigest()


def default_cache_path() -> Path:
    return user_cache_dir() / "verdicts.sqlite3"


@dataclass(frozen=True)
class CacheStats:
    path: Path
    entries: int
    bytes: int
    problem: str | None = None  # why the cache cannot be used (corrupt, unwritable); None: it works


def _problem(path: Path, error: Exception) -> str:
    """What is wrong with the cache file and what to do about it, in one line."""
    text = getattr(error, "strerror", None) or str(error)
    # An OperationalError is the environment (permissions, a full disk, a lock); any other
    # DatabaseError ("file is not a database", "malformed") is the file's content.
    if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError):
        return f"the verdict cache {path} is corrupt ({text}): run `rmjudge cache clear` (or delete the file)"
    if "locked" in text or "busy" in text:
        return f"the verdict cache {path} is locked by another process ({text})"
    fix = "free some disk space" if "full" in text else f"make {path.parent} writable"
    return f"the verdict cache {path} cannot be used ({text}): {fix}, or set RMJUDGE_HOME to another directory"


class VerdictCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_cache_path()
        self.problem: str | None = None  # set when the cache is off: it then stores and finds nothing
        self._warned = False
        self._db = self._open()

    def _open(self) -> sqlite3.Connection | None:
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: every put is its own short transaction, so writers never wait long
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._setup(db)
        except (sqlite3.Error, OSError) as error:
            if db is not None:
                db.close()
            self.problem = _problem(self.path, error)
            return None
        return db

    @staticmethod
    def _setup(db: sqlite3.Connection) -> None:
        """Switch to WAL and create the table, waiting out other processes doing the same.

        SQLite's busy timeout does not cover switching a new file to WAL while another connection
        sets it up, so several processes opening a fresh cache at once retry here (bounded).
        """
        deadline = time.monotonic() + 30.0
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS judgments "
                    "(key TEXT PRIMARY KEY, value BLOB NOT NULL, created REAL NOT NULL)"
                )
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _turn_off(self, error: Exception) -> None:
        """Stop using the cache for the rest of this process (the file is left as it is)."""
        if self._db is not None:
            self._db.close()
            self._db = None
        self.problem = _problem(self.path, error)

    def _warn_once(self, consequence: str = "; judging without it") -> None:
        if self.problem is not None and not self._warned:
            self._warned = True
            log.warning("rmjudge: %s%s", self.problem, consequence)

    def get(self, key: str) -> dict[str, Any] | None:
        if self._db is not None:
            try:
                row = self._db.execute("SELECT value FROM judgments WHERE key = ?", (key,)).fetchone()
                return orjson.loads(row[0]) if row else None
            except sqlite3.Error as error:
                self._turn_off(error)
            except orjson.JSONDecodeError:
                return None  # one unreadable entry: judged again, and replaced by the put that follows
        self._warn_once()
        return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self._db is not None:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO judgments (key, value, created) VALUES (?, ?, ?)",
                    (key, orjson.dumps(value), time.time()),
                )
                return
            except sqlite3.Error as error:
                self._turn_off(error)
        self._warn_once()

    def _files(self) -> list[Path]:
        """The database and SQLite's files beside it (write-ahead log, shared memory, journal)."""
        names = [self.path.name + suffix for suffix in ("", "-wal", "-shm", "-journal")]
        return [path for name in names if (path := self.path.parent / name).is_file()]

    def stats(self) -> CacheStats:
        """Entries and size; ``problem`` says when the file is corrupt or cannot be used (checked)."""
        entries = 0
        if self._db is not None:
            try:
                (entries,) = self._db.execute("SELECT COUNT(*) FROM judgments").fetchone()
                # quick_check reads every page: a damaged one shows here, not only when a key lands on it
                (verdict,) = self._db.execute("PRAGMA quick_check(1)").fetchone()
                if verdict != "ok":  # e.g. "*** in database main ***\nPage 2: btreeInitPage() returns error code 11"
                    raise sqlite3.DatabaseError(f"database disk image is malformed: {verdict.splitlines()[-1]}")
            except sqlite3.Error as error:
                self._turn_off(error)
        self._warn_once("")
        size = sum(p.stat().st_size for p in self._files())
        return CacheStats(self.path, int(entries) if self.problem is None else 0, size, self.problem)

    def clear(self) -> int:
        """Delete every entry; returns how many there were (0 for a corrupt file, which is removed)."""
        if self._db is not None:
            try:
                (entries,) = self._db.execute("SELECT COUNT(*) FROM judgments").fetchone()
                self._db.execute("DELETE FROM judgments")
                self._db.execute("VACUUM")
                return int(entries)
            except sqlite3.Error as error:
                self._turn_off(error)
        # Corrupt or unopenable: remove the files and start a fresh cache.
        files = self._files()
        for path in files:
            try:
                path.unlink()
            except OSError as error:
                raise UsageError(
                    f"cannot remove {path}: {error.strerror}: fix the permissions of {path.parent}, or delete it"
                ) from None
        self.problem = None
        self._warned = False
        self._db = self._open()
        if self.problem is not None and files:
            raise UsageError(self.problem)
        return 0  # nothing was stored: a cache that cannot be created holds nothing to clear

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
