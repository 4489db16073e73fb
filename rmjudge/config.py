"""Project settings for ``rmjudge check``: ``[tool.rmjudge]`` in pyproject.toml, or ``.rmjudge.toml``.

```toml
[tool.rmjudge]                      # in .rmjudge.toml: the same keys at the top level, and [[check]]
model = "rm-r1-qwen2.5-7b"          # any --model value; a relative path is relative to this file
threshold = 0.7                     # block when the baseline wins with at least this confidence
max_tokens = 512                    # reasoning budget per order
question = "..."                    # the request the files answer: text, or a file relative to this file
criteria = "..."                    # what "better" means: text, or a file relative to this file
template = "instruct"               # prompt family, or a directory relative to this file
parallel = 4                        # sequences decoded at once; endpoints = ["http://..."], concurrency = 8
decide = "probability"              # or "agreement"; tie_margin = 0.05
samples = 3                         # reasoning traces per order, sampled at this temperature:
temperature = 0.7                   # (both top level only; the command line's --temperature wins)

[[tool.rmjudge.check]]              # per glob; the first entry whose files match applies
files = "docs/generated/*.md"       # or a list of globs, relative to this file's directory
question = "Release notes a user can act on."
criteria = "factual accuracy first, then brevity"
max_tokens = 256
```

Globs: ``*`` and ``?`` stay within a directory, ``**`` spans directories, and a pattern without
a ``/`` matches the file name in any directory (as in .gitignore).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib  # type: ignore[no-redef]

from rmjudge.decision import RULES
from rmjudge.errors import InputError, UsageError
from rmjudge.textio import BOM, decode_utf8, read_text

CONFIG_FILE = ".rmjudge.toml"
PYPROJECT = "pyproject.toml"


@dataclass(frozen=True)
class Settings:
    """What decides one file's judgment; None: not set here (the next level down applies)."""

    model: str | None = None
    template: str | None = None
    question: str | None = None
    criteria: str | None = None
    threshold: float | None = None
    max_tokens: int | None = None
    # Where and how wide the judge runs (top level only: not per glob). Endpoints: OpenAI-compatible servers.
    parallel: int | None = None
    endpoints: tuple[str, ...] | None = None
    concurrency: int | None = None
    # How the judge decides (top level only): the rule, its tie margin, samples per order.
    decide: str | None = None
    tie_margin: float | None = None
    samples: int | None = None
    temperature: float | None = None  # for samples: applies where the command line leaves --temperature at 0

    def over(self, lower: Settings) -> Settings:
        """These settings, with the unset ones taken from ``lower``."""
        own = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(lower, **{name: value for name, value in own.items() if value is not None})


@dataclass(frozen=True)
class Rule:
    patterns: tuple[str, ...]
    settings: Settings
    _regexes: tuple[re.Pattern[str], ...]

    def matches(self, relative_path: str) -> bool:
        return any(regex.fullmatch(relative_path) for regex in self._regexes)


@dataclass(frozen=True)
class CheckConfig:
    path: Path | None  # the file the settings came from; None: no configuration
    defaults: Settings
    rules: tuple[Rule, ...] = ()

    @property
    def directory(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def settings_for(self, file: str | Path) -> Settings:
        """The settings for ``file`` (a path as given, relative to the current directory): the
        first matching rule's, completed from the top-level ones."""
        relative = os.path.relpath(os.path.abspath(file), self.directory).replace(os.sep, "/")
        for rule in self.rules:
            if not relative.startswith("../") and rule.matches(relative):
                return rule.settings.over(self.defaults)
        return self.defaults


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a path glob relative to the configuration's directory (see the module doc)."""
    pattern = pattern.strip().removeprefix("./")
    if "/" not in pattern.rstrip("/"):
        pattern = "**/" + pattern
    pattern = pattern.lstrip("/")
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))


def _fail(path: Path, key: str, message: str) -> UsageError:
    return UsageError(f"{path}: {key}: {message}")


def _text(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, key, f"expected a non-empty string, got {value!r}")
    return value


def _relative_file(path: Path, value: str) -> str:
    """A value naming a file or directory beside the configuration: made absolute, else kept as is."""
    candidate = path.parent / value
    return str(candidate.resolve()) if "\n" not in value and len(value) < 4096 and candidate.exists() else value


def _text_or_file(path: Path, key: str, value: Any) -> str:
    """A text setting given as the text itself, or as a file beside the configuration (its content)."""
    text = _text(path, key, value)
    resolved = _relative_file(path, text)
    if resolved == text:
        return text
    try:
        return read_text(resolved)
    except InputError as error:
        raise _fail(path, key, str(error)) from None


def _settings(path: Path, table: dict[str, Any], prefix: str, allowed: set[str]) -> Settings:
    for key in table:
        if key not in allowed:
            raise _fail(path, f"{prefix}{key}", f"unknown key (known: {', '.join(sorted(allowed))})")
    values: dict[str, Any] = {}
    if "model" in table:
        from rmjudge.models import check_model_spec

        values["model"] = _relative_file(path, _text(path, f"{prefix}model", table["model"]))
        check_model_spec(values["model"], where=f"{path}: {prefix}model")
    if "template" in table:
        values["template"] = _relative_file(path, _text(path, f"{prefix}template", table["template"]))
    for key in ("question", "criteria"):
        if key in table:
            values[key] = _text_or_file(path, f"{prefix}{key}", table[key])
    if "threshold" in table:
        threshold = table["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            raise _fail(path, f"{prefix}threshold", f"expected a number from 0 to 1, got {threshold!r}")
        values["threshold"] = float(threshold)
    if "max_tokens" in table:
        budget = table["max_tokens"]
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise _fail(path, f"{prefix}max_tokens", f"expected a whole number, 0 or more, got {budget!r}")
        values["max_tokens"] = budget
    if "decide" in table:
        rule = _text(path, f"{prefix}decide", table["decide"])
        if rule not in RULES:
            raise _fail(path, f"{prefix}decide", f"expected {' or '.join(repr(r) for r in RULES)}, got {rule!r}")
        values["decide"] = rule
    if "tie_margin" in table:
        margin = table["tie_margin"]
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < 0.5:
            raise _fail(path, f"{prefix}tie_margin", f"expected a number from 0 to below 0.5, got {margin!r}")
        values["tie_margin"] = float(margin)
    if "temperature" in table:
        temperature = table["temperature"]
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature >= 0:
            raise _fail(path, f"{prefix}temperature", f"expected a number, 0 or more, got {temperature!r}")
        values["temperature"] = float(temperature)
    for key in ("parallel", "concurrency", "samples"):
        if key in table:
            count = table[key]
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise _fail(path, f"{prefix}{key}", f"expected a whole number, 1 or more, got {count!r}")
            values[key] = count
    if "endpoints" in table:
        endpoints = table["endpoints"]
        endpoints = [endpoints] if isinstance(endpoints, str) else endpoints
        if not isinstance(endpoints, list) or not endpoints or not all(isinstance(e, str) and e for e in endpoints):
            raise _fail(path, f"{prefix}endpoints", f"expected a URL or a list of URLs, got {table['endpoints']!r}")
        values["endpoints"] = tuple(endpoints)
    return Settings(**values)


SETTING_KEYS = {f.name for f in fields(Settings)}
# How the judge runs and decides: one choice for the whole project, not per glob.
ENGINE_KEYS = {"parallel", "endpoints", "concurrency", "decide", "tie_margin", "samples", "temperature"}


def parse_config(path: Path, table: dict[str, Any], prefix: str) -> CheckConfig:
    """Settings from ``table`` (``[tool.rmjudge]``'s content, or a whole .rmjudge.toml)."""
    defaults = _settings(path, {k: v for k, v in table.items() if k != "check"}, prefix, SETTING_KEYS)
    checks = table.get("check", [])
    if not isinstance(checks, list) or not all(isinstance(entry, dict) for entry in checks):
        raise _fail(path, f"{prefix}check", "expected an array of tables: [[" + prefix + "check]]")
    rules = []
    for index, entry in enumerate(checks):
        where = f"{prefix}check[{index}]."
        if "files" not in entry:
            raise _fail(path, f"{where}files", 'missing: the glob(s) this entry applies to, e.g. files = "docs/*.md"')
        patterns = entry["files"]
        patterns = [patterns] if isinstance(patterns, str) else patterns
        globs_ok = isinstance(patterns, list) and patterns and all(isinstance(p, str) and p.strip() for p in patterns)
        if not globs_ok:
            raise _fail(path, f"{where}files", f"expected a glob or a non-empty list of globs, got {entry['files']!r}")
        settings = _settings(path, {k: v for k, v in entry.items() if k != "files"}, where, SETTING_KEYS - ENGINE_KEYS)
        rules.append(Rule(tuple(patterns), settings, tuple(glob_regex(p) for p in patterns)))
    return CheckConfig(path=path, defaults=defaults, rules=tuple(rules))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = decode_utf8(path.read_bytes(), str(path))
        return tomllib.loads(text.removeprefix(BOM))
    except InputError as error:  # not UTF-8: TOML files are UTF-8 by definition
        raise UsageError(str(error)) from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read: {error.strerror}") from None


def _rmjudge_table(path: Path) -> tuple[dict[str, Any], str] | None:
    """The rmjudge settings in ``path`` and the key prefix that names them in errors; None if it has none."""
    data = _read_toml(path)
    if path.name != PYPROJECT:
        return data, ""
    tool = data.get("tool", {})
    if not isinstance(tool, dict) or "rmjudge" not in tool:
        return None
    if not isinstance(tool["rmjudge"], dict):
        raise _fail(path, "tool.rmjudge", "expected a table: [tool.rmjudge]")
    return tool["rmjudge"], "tool.rmjudge."


def load_config(path: str | Path | None = None, start: Path | None = None) -> CheckConfig:
    """The configuration in ``path``, else the nearest one found from ``start`` (default: the current
    directory) up to the repository root: ``.rmjudge.toml``, or a pyproject.toml with [tool.rmjudge]."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"--config {path}: no such file")
        found = _rmjudge_table(path)
        if found is None:
            raise UsageError(f"--config {path}: it has no [tool.rmjudge] table")
        return parse_config(path, *found)
    directory = (start or Path.cwd()).absolute()
    for candidate_dir in (directory, *directory.parents):
        own, pyproject = candidate_dir / CONFIG_FILE, candidate_dir / PYPROJECT
        in_pyproject = _rmjudge_table(pyproject) if pyproject.is_file() else None
        if own.is_file():
            if in_pyproject is not None:
                raise UsageError(f"{own} and {pyproject} [tool.rmjudge] both configure rmjudge: keep one")
            return parse_config(own, _read_toml(own), "")
        if in_pyproject is not None:
            return parse_config(pyproject, *in_pyproject)
        if (candidate_dir / ".git").exists():
            break  # the repository's root: settings above it belong to something else
    return CheckConfig(path=None, defaults=Settings())
