"""What GGUF file and repository names say: the quantization, a split part, a vision projector, the checkpoint."""

from __future__ import annotations

import re

# Quant names as llama.cpp's quantize and the common GGUF publishers write them in file names.
_QUANT_NAME = r"I?Q[0-9]_[A-Z0-9_]*?|TQ[0-9]_[0-9]|MXFP4(?:_MOE)?|B?F16|F32"
_QUANT = re.compile(rf"(?<![A-Za-z0-9])({_QUANT_NAME})(?=[.\-]|$)", re.IGNORECASE)
_SPLIT_PART = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
# "-GGUF", "-i1-GGUF", "-Q4_K_M-GGUF" (gguf-my-repo): what a GGUF repository adds to the checkpoint's name.
_GGUF_REPO_SUFFIX = re.compile(rf"(?:[-.](?:{_QUANT_NAME}))?(?:-i1)?-gguf$", re.IGNORECASE)


def quant_of(filename: str) -> str | None:
    """The quantization named in a GGUF file name (``X.i1-Q4_K_M.gguf`` -> ``Q4_K_M``)."""
    stem = re.sub(r"\.gguf$", "", filename.rsplit("/", 1)[-1], flags=re.IGNORECASE)
    found = _QUANT.findall(stem)
    return found[-1].upper() if found else None


def matches_quant(filename: str, quant: str) -> bool:
    """The file is of quant ``quant``: a whole-token match, so Q4_K does not pick Q4_K_M nor Q4_XS IQ4_XS."""
    pattern = rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9_])"
    return re.search(pattern, filename.rsplit("/", 1)[-1], re.IGNORECASE) is not None


def is_model_file(filename: str) -> bool:
    name = filename.rsplit("/", 1)[-1].lower()
    return name.endswith(".gguf") and "mmproj" not in name  # mmproj: a vision projector, not a model


def is_split_part(filename: str) -> bool:
    """One part of a model split by llama-gguf-split (``X-00001-of-00003.gguf``), which rmjudge does not join."""
    return _SPLIT_PART.search(filename) is not None


def quants_in(filenames: list[str]) -> list[str]:
    """The quants of the model files among ``filenames`` (a file's name when it names none), sorted."""
    return sorted({quant_of(name) or name for name in filenames if is_model_file(name)})


def checkpoint_of(repo: str) -> str:
    """The checkpoint a GGUF repository's name says it quantizes, lowercased (``owner/X-i1-GGUF`` -> ``x``)."""
    return _GGUF_REPO_SUFFIX.sub("", repo.split("/")[-1]).lower()
