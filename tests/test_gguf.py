"""GGUF headers: what is read, and the two different faults: not a GGUF file, or a GGUF file cut short."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from rmjudge.errors import ModelError
from rmjudge.gguf import chat_template, context_length, quant_name, read_metadata

try:
    from tests.fakehub import make_gguf
except ImportError:  # tests/ is not a package: pytest put the folder itself on sys.path
    from fakehub import make_gguf  # type: ignore[no-redef]


def write(tmp_path: Path, data: bytes, name: str = "model.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ModelError) as error:
        read_metadata(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_valid_header_is_read(tmp_path: Path) -> None:
    metadata = read_metadata(write(tmp_path, make_gguf(file_type=7, context=4096, padding=100)))
    assert metadata["gguf.version"] == 3 and metadata["general.architecture"] == "qwen2"
    assert quant_name(metadata) == "Q8_0" and context_length(metadata) == 4096
    assert chat_template(metadata) is not None and chat_template({"tokenizer.chat_template": "  "}) is None
    assert metadata["tokenizer.ggml.tokens"] == ["a", "b"]
    assert quant_name({"general.file_type": 999}) is None and quant_name({}) is None


@pytest.mark.parametrize("data", [b"abc", b"<html>", b"PK\x03\x04 a zip file", b"ggml"])
def test_other_files_are_not_gguf_whatever_their_size(tmp_path: Path, data: bytes) -> None:
    message = error_of(write(tmp_path, data))
    assert "is not a GGUF file" in message and "truncated" not in message
    assert repr(data[:4]) in message  # the bytes it starts with, so the user sees what the file is


@pytest.mark.parametrize("cut", [3, 6, 20, 60])
def test_a_gguf_cut_short_is_truncated(tmp_path: Path, cut: int) -> None:
    """The magic is right (or what there is of it): an interrupted download, not the wrong file."""
    message = error_of(write(tmp_path, make_gguf(padding=0)[:cut]))
    assert "is truncated" in message and "not a GGUF" not in message


def test_an_empty_file_says_so(tmp_path: Path) -> None:
    assert "is empty" in error_of(write(tmp_path, b""))


def test_a_garbage_length_is_truncation_not_a_crash(tmp_path: Path) -> None:
    # One key whose length field claims 2**62 bytes: reading it must not try to allocate that.
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**62) + b"key"
    assert "is truncated" in error_of(write(tmp_path, header))


def test_old_versions_and_unknown_types_are_named(tmp_path: Path) -> None:
    assert "GGUF version 1" in error_of(write(tmp_path, b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "v1.gguf"))
    key = struct.pack("<Q", 3) + b"key"
    unknown_type = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + key + struct.pack("<I", 99) + b"\0" * 16
    assert "corrupt GGUF file (unknown GGUF value type 99)" in error_of(write(tmp_path, unknown_type, "t.gguf"))
