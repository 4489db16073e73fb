"""Read the user's texts: files, ``-`` for stdin, or literal text; one-line errors for bad input.

Every text read from a file or standard input (compare's A and B, question files, a question file
named in the configuration) is UTF-8, read with its leading byte order mark (BOM) removed and its
line endings made LF (CRLF and lone CR alike): the RM-R1 models were trained on LF text, and an
editor's choice of line ending or BOM must not change a verdict. JSON Lines files only lose the BOM
(JSON needs no more: a CR before the newline is whitespace, and texts inside are escaped).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from rmjudge.errors import InputError, UsageError

_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")  # ".txt", ".md", ".jsonl"; not "3.14"

BOM = "\ufeff"
BOM_BYTES = BOM.encode()


def strip_bom(data: bytes) -> bytes:
    return data[len(BOM_BYTES) :] if data.startswith(BOM_BYTES) else data


def normalise_text(text: str) -> str:
    """``text`` without a leading BOM, with CRLF and CR line endings made LF (see the module doc)."""
    return text.removeprefix(BOM).replace("\r\n", "\n").replace("\r", "\n")


def decode_utf8(data: bytes, name: str | None = None) -> str:
    """``data`` as UTF-8; a one-line error naming ``name`` (or none, where the caller names the place)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        subject = f"{name} is not" if name else "not"
        raise InputError(
            f"{subject} UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}): "
            "convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from None


def decode_text(data: bytes, name: str) -> str:
    """A file's bytes as the text the model sees: UTF-8, normalised (see the module doc)."""
    return normalise_text(decode_utf8(data, name))


def open_input(source: str, kind: str = "text file") -> BinaryIO:
    """File ``source`` opened for reading bytes, or standard input for ``-``; one-line errors."""
    if source == "-":
        return sys.stdin.buffer
    try:
        return Path(source).open("rb")
    except FileNotFoundError:
        raise InputError(f"{source}: no such file (give a {kind}, or - for standard input)") from None
    except IsADirectoryError:
        raise InputError(f"{source} is a directory: give a {kind}") from None
    except OSError as error:
        raise InputError(f"cannot read {source}: {error.strerror}") from None


def read_text(source: str, stdin_used: list[bool] | None = None) -> str:
    """The text of file ``source``, or of standard input for ``-`` (once per command), normalised."""
    if source == "-" and stdin_used is not None:
        if stdin_used and stdin_used[0]:
            raise UsageError("only one input can be '-' (standard input)")
        stdin_used[:] = [True]
    handle = open_input(source, "path to a text file")
    try:
        data = handle.read()
    except OSError as error:
        raise InputError(f"cannot read {source}: {error.strerror}") from None
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    return decode_text(data, "standard input" if source == "-" else source)


def _looks_like_a_file_name(value: str) -> bool:
    """No whitespace, and a path separator or a file extension: "notes/q.txt", "question.md"."""
    separator = "/" in value or os.sep in value
    return not any(c.isspace() for c in value) and (separator or _EXTENSION.search(value) is not None)


def read_question(
    value: str | None, warn: Callable[[str], None] | None = None, stdin_used: list[bool] | None = None
) -> str | None:
    """``--question``: an existing file's content, else the text itself. None (the default question)
    when there is none or it is empty; ``warn`` says so. A value that looks like a file name but names
    no file is refused: it is more likely a typo than the question."""
    return _text_or_file(
        value, ("--question", "the question", "ask it as the question itself, add a space or end it with '?'"),
        "judging with the default task statement", warn, stdin_used,
    )  # fmt: skip


def read_criteria(
    value: str | None, warn: Callable[[str], None] | None = None, stdin_used: list[bool] | None = None
) -> str | None:
    """``--criteria``: as ``read_question`` reads ``--question``; None: no criteria."""
    return _text_or_file(
        value, ("--criteria", "the criteria text", "give them as text, add a space"), "judging without criteria",
        warn, stdin_used,
    )  # fmt: skip


def _text_or_file(
    value: str | None,
    names: tuple[str, str, str],  # the option, what it holds, how to give a file-like name as text
    when_empty: str,
    warn: Callable[[str], None] | None,
    stdin_used: list[bool] | None,
) -> str | None:
    if value is None:
        return None
    option, what, as_text = names
    from_file = value == "-" or (len(value) < 4096 and "\n" not in value and Path(value).is_file())
    if not from_file and _looks_like_a_file_name(value):
        raise InputError(f"{option} {value}: no such file (to {as_text})")
    text = read_text(value, stdin_used) if from_file else value
    if text.strip():
        return text
    if warn is not None:
        where = f" in {'standard input' if value == '-' else value}" if from_file else ""
        warn(f"{what}{where} is empty: {when_empty}")
    return None
