"""One llama.cpp context shared by many sequences: its parameters, the keys/values each sequence
holds (one unified KV cache, prefixes shared by a copy), and the llama_decode of one step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rmjudge.errors import ModelError

STEP_TOKENS = 512  # tokens one llama_decode takes at most (llama.cpp's n_batch)


@dataclass
class Feed:
    """What one sequence puts into one llama_decode."""

    seq_id: int
    tokens: list[int]
    all_logits: bool  # a generating sequence: the logits after its token and after each draft
    last_logits: bool  # a prompt chunk: the logits after its last token, when that ends the prompt
    first_row: int = 0


class SequenceContext:
    """A llama.cpp context of ``n_ctx`` cells for ``sequences`` sequences, and the tokens each one holds."""

    def __init__(
        self,
        llama_cpp: Any,
        internals: Any,
        model: Any,
        *,
        n_ctx: int,
        sequences: int,
        step_tokens: int,
        outputs: int,
        threads: int,
        debug: bool,
    ) -> None:
        self._llama_cpp = llama_cpp
        self._model = model
        params = _context_params(llama_cpp, n_ctx, sequences, step_tokens, outputs, threads)
        try:
            self._context = internals.LlamaContext(model=model, params=params, verbose=debug)
        except ValueError:
            raise ModelError(
                f"llama.cpp could not allocate a context of {n_ctx} tokens for {sequences} sequences: "
                "lower --parallel or --max-tokens"
            ) from None
        self._batch = internals.LlamaBatch(n_tokens=step_tokens, embd=0, n_seq_max=1, verbose=debug)
        self.n_ctx = n_ctx
        # Per seq_id: the tokens whose keys/values the context holds for that sequence, in position order.
        self._kv: list[list[int]] = [[] for _ in range(sequences)]

    def forget_sequences_from(self, slots: int) -> None:
        """Drop the keys/values of sequences a run will not use: only its slots' cells may stay."""
        for seq_id in range(slots, len(self._kv)):
            if self._kv[seq_id]:
                self._remove(seq_id, 0)

    def kv_tokens(self, seq_id: int) -> list[int]:
        return self._kv[seq_id]

    def _remove(self, seq_id: int, start: int) -> None:
        """Drop sequence ``seq_id``'s cells from position ``start`` on."""
        memory = self._context.memory
        if not self._llama_cpp.llama_memory_seq_rm(memory, seq_id, start, -1):
            # Some caches (recurrent) cannot drop a tail: drop the whole sequence.
            self._llama_cpp.llama_memory_seq_rm(memory, seq_id, -1, -1)
            start = 0
        del self._kv[seq_id][start:]

    def share(self, source: int, target: int, length: int) -> int:
        """Make ``target`` hold ``source``'s first ``length`` tokens; returns how many it holds."""
        if source == target:
            if len(self._kv[target]) > length:
                self._remove(target, length)
            return len(self._kv[target])
        self._remove(target, 0)
        if length > 0:
            self._llama_cpp.llama_memory_seq_cp(self._context.memory, source, target, 0, length)
            self._kv[target] = self._kv[source][:length]
        return length

    def drop(self, seq_id: int, start: int) -> None:
        if len(self._kv[seq_id]) > start:
            self._remove(seq_id, start)

    def decode(self, entries: Sequence[Feed]) -> None:
        """Evaluate every entry's tokens in one llama_decode; each entry's output rows are set."""
        batch = self._batch.batch
        n = 0
        for entry in entries:
            kv = self._kv[entry.seq_id]
            entry.first_row = n
            for offset, token in enumerate(entry.tokens):
                batch.token[n] = token
                batch.pos[n] = len(kv) + offset
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = entry.seq_id
                batch.logits[n] = entry.all_logits or (offset == len(entry.tokens) - 1 and entry.last_logits)
                n += 1
        batch.n_tokens = n
        status = self._llama_cpp.llama_decode(self._context.ctx, batch)
        if status != 0:
            for entry in entries:  # what this decode placed is unknown: those sequences start over
                self.drop(entry.seq_id, 0)
            raise ModelError(
                f"llama.cpp failed to evaluate {n} tokens (status {status}): lower --parallel or --max-tokens"
            )
        for entry in entries:
            self._kv[entry.seq_id].extend(entry.tokens)

    def logits(self, row: int) -> np.ndarray:
        pointer = self._llama_cpp.llama_get_logits_ith(self._context.ctx, row)
        return np.ctypeslib.as_array(pointer, shape=(self._model.n_vocab(),))


def _context_params(llama_cpp: Any, n_ctx: int, sequences: int, step_tokens: int, outputs: int, threads: int) -> Any:
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = step_tokens
    params.n_ubatch = STEP_TOKENS
    params.n_seq_max = sequences
    # Every generating sequence asks for the logits of its token and of each draft; prompt
    # chunks for their last token only. The logits buffer is sized for that, not for n_batch.
    params.n_outputs_max = outputs
    params.n_threads = threads
    params.n_threads_batch = threads
    # One cache for all sequences: a prefix copy is a metadata change and shared cells are stored
    # once. Flash attention skips the other sequences' cells (masked) instead of computing them.
    params.kv_unified = True
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    params.swa_full = True  # sliding-window layers keep every position, so a shared prefix stays whole
    return params


def kv_bytes_per_token(metadata: Mapping[str, object]) -> int | None:
    """Bytes of keys and values one token takes over all layers (f16), from the GGUF header."""
    arch = metadata.get("general.architecture")

    def number(key: str, default: object = None) -> Any:
        return metadata.get(f"{arch}.{key}", default)

    layers, heads, width = number("block_count"), number("attention.head_count"), number("embedding_length")
    if not isinstance(layers, int) or not isinstance(width, int) or not heads:
        return None
    kv_heads = number("attention.head_count_kv", heads)
    head_count = heads if isinstance(heads, int) else max(heads)  # type: ignore[call-overload]
    key_length = number("attention.key_length", width // max(1, head_count))
    value_length = number("attention.value_length", key_length)
    total_kv_heads = sum(kv_heads) if isinstance(kv_heads, list) else int(kv_heads) * layers  # type: ignore[call-overload]
    return int(total_kv_heads * (int(key_length) + int(value_length)) * 2)
