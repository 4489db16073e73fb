"""Read a GGUF file's metadata (key/value header) without loading the model.

Cheap enough to run before every load: it tells the prompt family, the chat template and
the trained context length, and rejects files that are not GGUF (wrong magic bytes) or are GGUF
cut short (an interrupted download): two different mistakes, with two different fixes.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

from rmjudge.errors import ModelError

_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i",
    6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9
_KEEP_ARRAYS_UP_TO = 64  # token lists are huge: keep only their length
_LARGE_READ = 1 << 20  # a read this big is checked against the file's size first
MAGIC = b"GGUF"
# llama.cpp's llama_ftype (include/llama.h), stored as general.file_type.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}  # fmt: skip


class _Truncated(Exception):
    pass


def _read(handle: BinaryIO, size: int) -> bytes:
    # A garbage length must not become a huge allocation: past the end of the file, the file was cut.
    if size > _LARGE_READ and size > os.fstat(handle.fileno()).st_size - handle.tell():
        raise _Truncated
    data = handle.read(size)
    if len(data) != size:
        raise _Truncated
    return data


def _read_string(handle: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", _read(handle, 8))
    return _read(handle, length).decode("utf-8", errors="replace")


def _read_value(handle: BinaryIO, value_type: int) -> object:
    if value_type == _STRING:
        return _read_string(handle)
    if value_type == _ARRAY:
        item_type, count = struct.unpack("<IQ", _read(handle, 12))
        if count > _KEEP_ARRAYS_UP_TO and item_type in _SCALARS:
            handle.seek(count * struct.calcsize(_SCALARS[item_type]), 1)  # skip, don't decode
            return f"<array of {count}>"
        items = [_read_value(handle, item_type) for _ in range(count)]
        return items if count <= _KEEP_ARRAYS_UP_TO else f"<array of {count}>"
    fmt = _SCALARS.get(value_type)
    if fmt is None:
        raise ValueError(f"unknown GGUF value type {value_type}")
    return struct.unpack(fmt, _read(handle, struct.calcsize(fmt)))[0]


def _check_magic(path: Path, handle: BinaryIO) -> None:
    """A file that starts with anything but ``GGUF`` is not one; a shorter file that starts like one was cut."""
    magic = handle.read(len(MAGIC))
    if magic == MAGIC:
        return
    if not magic:
        raise ModelError(f"{path} is empty, not a GGUF model (an interrupted download?): delete it and fetch it again")
    if MAGIC.startswith(magic):
        raise _Truncated
    raise ModelError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'): pass a .gguf model")


def read_metadata(path: Path) -> dict[str, object]:
    """All header key/values of a GGUF file; raises ModelError for anything that is not one."""
    try:
        with path.open("rb") as handle:
            _check_magic(path, handle)
            (version,) = struct.unpack("<I", _read(handle, 4))
            if version < 2:
                raise ModelError(f"{path} is GGUF version {version}; re-download a current GGUF")
            tensor_count, kv_count = struct.unpack("<QQ", _read(handle, 16))
            metadata: dict[str, object] = {"gguf.version": version, "gguf.tensor_count": tensor_count}
            for _ in range(kv_count):
                key = _read_string(handle)
                (value_type,) = struct.unpack("<I", _read(handle, 4))
                metadata[key] = _read_value(handle, value_type)
            if handle.tell() > path.stat().st_size:
                raise _Truncated
            return metadata
    except _Truncated:
        raise ModelError(f"{path} is truncated (an incomplete download?): delete it and fetch it again") from None
    except ValueError as error:
        raise ModelError(f"{path} is a corrupt GGUF file ({error}): fetch it again") from None
    except OSError as error:
        raise ModelError(f"cannot read model {path}: {error.strerror}") from None


def context_length(metadata: dict[str, object]) -> int | None:
    """The context length the model was trained with (``<arch>.context_length``)."""
    value = metadata.get(f"{metadata.get('general.architecture')}.context_length")
    return value if isinstance(value, int) else None


def quant_name(metadata: dict[str, object]) -> str | None:
    """The quantization recorded in the header (``general.file_type``), as llama.cpp names it."""
    file_type = metadata.get("general.file_type")
    return FILE_TYPES.get(file_type) if isinstance(file_type, int) else None


def chat_template(metadata: dict[str, object]) -> str | None:
    value = metadata.get("tokenizer.chat_template")
    return value if isinstance(value, str) and value.strip() else None
