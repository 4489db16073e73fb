"""What this machine offers a model: memory available now, physical CPU cores, sizes in bytes as people read them.

Rich-free and dependency-free: the core's messages (a full disk, a model larger than memory) and
the presentation layer's tables format sizes with the same ``human_size``.
"""

from __future__ import annotations

import os
from pathlib import Path


def human_size(size: int | None) -> str:
    """Bytes as "4.7 GB" / "253.1 MB" ("" when unknown): for messages and tables."""
    return "" if size is None else f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def available_memory() -> int | None:
    """Bytes of memory available for a new process: MemAvailable on Linux, free pages elsewhere."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def physical_cores() -> int:
    """Physical cores available to this process (llama.cpp's default is half the logical ones)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 1
    try:
        cores: set[tuple[str, str]] = set()
        physical = core = ""
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    core = value.strip()
                    cores.add((physical, core))
        if cores:
            return max(1, min(available, len(cores)))
    except OSError:
        pass
    return max(1, available)


def memory_warning(path: Path) -> str | None:
    """A one-line warning when the model file is larger than the memory available now, else None."""
    try:
        size = path.stat().st_size
    except OSError:
        return None
    available = available_memory()
    if available is None or size <= available:
        return None
    return (
        f"warning: {path.name} is {human_size(size)} but only {human_size(available)} of memory is available: "
        "loading may swap or fail; close other programs or pick a smaller --quant"
    )
