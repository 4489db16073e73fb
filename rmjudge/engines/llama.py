"""The llama.cpp engine: a GGUF run in-process through llama-cpp-python, many sequences at once.

It drives llama-cpp-python's low-level API because the high-level completion call gets in the way:
its stop check re-detokenizes the whole text every token, token probabilities need
``logits_all=True`` there (slow prefill, gigabytes), and it runs one sequence at a time.

How many jobs share one context:
- One unified KV cache. Each running job is a sequence with its own ``seq_id`` and positions.
- A job starts from the longest prefix any sequence holds, or is about to hold (the system prompt
  and question are shared by both orders of a pair and by every pair with the same question): a
  KV sequence copy, metadata only in a unified cache. Only the rest of its prompt is evaluated.
- Continuous batching: each step is ONE ``llama_decode`` that advances every generating sequence
  by a token (plus its drafts), then evaluates prompt chunks of the sequences being prefilled,
  so decoding never waits for a whole prompt. A finished sequence's slot takes the next job at once;
  its keys/values stay until then, for the prefixes of later jobs.
- Logits are read only where needed (``llama_get_logits_ith``); the stop and probe texts are looked
  for in the newest bytes only, so every token costs the same however long the text is.
- Optional prompt-lookup drafts (``speculative``): the tokens that followed the latest earlier
  occurrence of the sequence's last n-gram are verified in the same pass, exact at greedy decoding.
"""

from __future__ import annotations

import ctypes
import logging
import re
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rmjudge import gguf
from rmjudge.chat import render_with_spans, safe_tokens
from rmjudge.engines import EngineOptions
from rmjudge.engines.base import EngineInfo, Job, Output, Prompt, Sampling
from rmjudge.errors import ContextTooLongError, ModelError, UsageError
from rmjudge.system import available_memory, human_size, physical_cores

# Sequences decoded at once when nothing else is asked. Measured in bench/bench_throughput.py (see the
# README): on a 2-core CPU the aggregate decode rate flattens past 4 sequences.
DEFAULT_PARALLEL = 4
MIN_CONTEXT = 2048
CONTEXT_STEP = 1024  # contexts are sized in these steps: fewer re-creations as batches grow
APPENDIX_ROOM = 32  # tokens each sequence keeps free for a forced verdict's appendix
STEP_TOKENS = 512  # tokens one llama_decode takes at most (llama.cpp's n_batch)
PREFILL_CHUNK = 256  # prompt tokens per step while other sequences decode: how long they may stall
WAIT_FOR_PREFIX = 32  # a job waits for another job's prompt evaluation only to share this many tokens or more
DRAFT_NGRAMS = (3, 2)  # n-gram lengths a draft is looked up by, longest first
COMPUTE_ROOM = 300 * 1024 * 1024  # memory llama.cpp takes beside the weights and the KV cache (buffers, logits)


def create(options: EngineOptions) -> LlamaEngine:
    """The registry's entry point (``rmjudge.engines.llama:create``)."""
    if options.model is None:
        raise UsageError("the llama engine runs a local GGUF: pass --model (a path, an alias or hf://...)")
    return LlamaEngine(
        options.model.path,
        sha256=options.model.sha256,
        gpu_layers=options.gpu_layers,
        threads=options.threads,
        parallel=options.parallel or DEFAULT_PARALLEL,
        speculative=options.speculative,
        debug=options.debug,
    )


class LlamaEngine:
    """A GGUF loaded once through llama-cpp-python (CPU or GPU); ``run`` decodes many jobs at once."""

    def __init__(
        self,
        path: Path,
        *,
        sha256: str | None = None,
        gpu_layers: int | None = None,
        threads: int | None = None,
        parallel: int = DEFAULT_PARALLEL,
        speculative: int = 0,
        debug: bool = False,
    ) -> None:
        if parallel < 1:
            raise UsageError(f"--parallel {parallel}: use 1 or more sequences")
        if speculative < 0:
            raise UsageError(f"--speculative {speculative}: use 0 (off) or a draft length")
        metadata = gguf.read_metadata(path)  # rejects non-GGUF and truncated files before llama.cpp sees them
        import llama_cpp
        import llama_cpp._logger  # installs the log callback that honours the level set below
        from llama_cpp import _internals

        self._llama_cpp = llama_cpp
        self._internals = _internals
        # llama-cpp-python's level table is off by one against ggml's (warnings arrive as errors):
        # without --debug nothing of llama.cpp's log shows; failures surface as exceptions anyway.
        logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if debug else logging.CRITICAL + 1)
        self.path = path
        self._sha256 = sha256
        self._debug = debug
        self.threads = threads or physical_cores()
        self.gpu_layers = (
            gpu_layers if gpu_layers is not None else (-1 if llama_cpp.llama_supports_gpu_offload() else 0)
        )
        self.parallel = parallel
        self.speculative = speculative
        # A step holds every generating sequence's token and drafts, and room for prompt chunks.
        self.step_tokens = max(STEP_TOKENS, parallel * (1 + speculative) + PREFILL_CHUNK)
        # The vocabulary alone first: formatting, tokenizing and cache look-ups need no weights, so a run
        # served from the verdict cache never reads gigabytes. The weights load on the first evaluation.
        self._model = self._load(vocab_only=True)
        self._weights_loaded = False
        # From the header: a vocabulary-only model does not know its trained context.
        trained = gguf.context_length(metadata) or self._load(vocab_only=False).n_ctx_train()
        self._formatter = self._make_formatter(gguf.chat_template(metadata))
        name = metadata.get("general.name")
        self.info = EngineInfo(
            name=str(name) if name else None,
            metadata=metadata,
            chat_format="gguf" if self._formatter is not None else "plain",
            max_context=trained,
            parallel=parallel,
            versions={"llama_cpp_python": llama_cpp.__version__},
        )
        self._kv_bytes_per_token = _kv_bytes_per_token(metadata)
        self._context: Any = None  # llama_cpp._internals.LlamaContext, created by _ensure_context
        self._batch: Any = None
        self.n_ctx = 0
        # Per seq_id: the tokens whose keys/values the context holds for that sequence, in position order.
        self._kv: list[list[int]] = []
        self._choice_ids: dict[tuple[str, ...], list[int]] = {}
        self._piece_buffer = ctypes.create_string_buffer(64)

    def _load(self, vocab_only: bool) -> Any:
        params = self._llama_cpp.llama_model_default_params()
        params.n_gpu_layers = self.gpu_layers
        params.vocab_only = vocab_only
        # Read the weights in rather than map the file: on CPU llama.cpp repacks most tensors into a
        # faster layout, and with a mapping their original pages stayed resident too (Qwen 1.5B: peak
        # RSS 1.87 GB mapped, 1.28 GB read, for a 1.07 GB file).
        params.load_mode = self._llama_cpp.LLAMA_LOAD_MODE_NONE
        try:
            return self._internals.LlamaModel(path_model=str(self.path), params=params, verbose=self._debug)
        except ValueError as error:
            raise ModelError(
                f"llama.cpp could not load {self.path.name} ({error}): "
                "is it a complete GGUF of a supported architecture?"
            ) from None

    # -- identity and formatting ---------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        if self._sha256 is None:
            from rmjudge.models import file_sha256

            self._sha256 = file_sha256(self.path)
        return {
            "id": f"sha256:{self._sha256}",
            "file": self.path.name,
            "sha256": self._sha256,
            "gguf_name": self.info.name,
        }

    def _make_formatter(self, template: str | None) -> Any:
        if template is None:
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def text(token: int) -> str:
            return self._model.token_get_text(token) if token != -1 else ""

        return Jinja2ChatFormatter(
            template=template,
            eos_token=text(self._model.token_eos()),
            bos_token=text(self._model.token_bos()),
            add_generation_prompt=True,
        )

    def format_prompt(self, messages: Sequence[Mapping[str, str]]) -> Prompt:
        if self._formatter is None:
            # The GGUF has no chat template (a base model): plain text, messages separated by blank
            # lines, BOS as the vocabulary asks. Recorded as chat_format "plain" in every judgment.
            text = "\n\n".join(m["content"] for m in messages) + "\n\n"
            return Prompt(text=text, tokens=tuple(self._model.tokenize(text.encode(), add_bos=True, special=False)))
        # The template writes its own special tokens (BOS included), as llama-cpp-python does; the
        # judged texts inside it never become special tokens.
        text, spans = render_with_spans(lambda formatted: self._formatter(messages=formatted).prompt, messages)
        return Prompt(text=text, tokens=tuple(safe_tokens(text, spans, self.tokenize)))

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """Tokens of a continuation (no BOS); ``special``: control-token strings become control tokens,
        as in markup rmjudge writes itself (an appendix), never in judged texts."""
        return list(self._model.tokenize(text.encode(), add_bos=False, special=special))

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens`` as the model reads it; control tokens render as nothing."""
        return _decode(bytearray(b"".join(self._piece(token) for token in tokens)))

    def _piece(self, token: int) -> bytes:
        # llama-cpp-python's own token_to_piece returns its whole buffer, NUL padding included.
        size = self._llama_cpp.llama_token_to_piece(self._model.vocab, token, self._piece_buffer, 64, 0, False)
        if size < 0:  # longer than the buffer (rare): ask again with the size it needs
            buffer = ctypes.create_string_buffer(-size)
            size = self._llama_cpp.llama_token_to_piece(self._model.vocab, token, buffer, -size, 0, False)
            return buffer.raw[:size]
        return self._piece_buffer.raw[:size]

    def _is_end(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._model.vocab, token))

    def _choice_token_ids(self, choices: tuple[str, ...]) -> list[int]:
        if choices not in self._choice_ids:
            self._choice_ids[choices] = [self.tokenize(choice)[0] for choice in choices]
        return self._choice_ids[choices]

    def _probabilities(self, logits: np.ndarray, choices: tuple[str, ...]) -> dict[str, float]:
        picked = logits[self._choice_token_ids(choices)].astype(np.float64)
        weights = np.exp(picked - picked.max())
        return {choice: float(w) for choice, w in zip(choices, weights / weights.sum())}

    # -- running jobs ----------------------------------------------------------------------------

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Output]]:
        if not jobs:
            return
        slots = min(self.parallel, len(jobs))
        self._ensure_context(slots, max(self._cells_per_job(job) for job in jobs))
        scheduler = _Scheduler(self, jobs, slots)
        finished = False
        try:
            while not scheduler.done:
                yield from scheduler.step()
            finished = True
        finally:
            if not finished:  # stopped mid-run (an error, Ctrl-C, the caller stopped reading)
                scheduler.abandon()

    def _cells_per_job(self, job: Job) -> int:
        needed = len(job.prompt.tokens) + job.max_tokens + APPENDIX_ROOM
        if needed > self.info.max_context:
            raise ContextTooLongError(
                f"a prompt of {len(job.prompt.tokens)} tokens with a budget of {job.max_tokens} needs {needed} "
                f"tokens but the model's context is {self.info.max_context}: lower --max-tokens or shorten the texts",
                needed=needed,
                available=self.info.max_context,
            )
        return needed

    # -- the context -------------------------------------------------------------------------------

    def _ensure_context(self, slots: int, cells_per_job: int) -> None:
        """A context where ``slots`` sequences of ``cells_per_job`` tokens fit at once, grown when needed."""
        needed = slots * cells_per_job
        if self._context is not None and needed <= self.n_ctx:
            self._forget_sequences_from(slots)
            return
        n_ctx = max(MIN_CONTEXT, -(-needed // CONTEXT_STEP) * CONTEXT_STEP)
        self._check_memory(n_ctx, slots, cells_per_job)
        self._context = None  # free the old one first: two KV caches at once may not fit
        self._kv = []
        if not self._weights_loaded:
            self._model = self._load(vocab_only=False)
            self._weights_loaded = True
        try:
            self._context = self._internals.LlamaContext(
                model=self._model, params=self._context_params(n_ctx), verbose=self._debug
            )
        except ValueError:
            raise ModelError(
                f"llama.cpp could not allocate a context of {n_ctx} tokens for {self.parallel} sequences: "
                "lower --parallel or --max-tokens"
            ) from None
        self._batch = self._internals.LlamaBatch(n_tokens=self.step_tokens, embd=0, n_seq_max=1, verbose=self._debug)
        self.n_ctx = n_ctx
        self._kv = [[] for _ in range(self.parallel)]

    def _context_params(self, n_ctx: int) -> Any:
        llama_cpp = self._llama_cpp
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = self.step_tokens
        params.n_ubatch = STEP_TOKENS
        params.n_seq_max = self.parallel
        # Every generating sequence asks for the logits of its token and of each draft; prompt
        # chunks for their last token only. The logits buffer is sized for that, not for n_batch.
        params.n_outputs_max = self.parallel * (1 + self.speculative)
        params.n_threads = self.threads
        params.n_threads_batch = self.threads
        # One cache for all sequences: a prefix copy is a metadata change and shared cells are stored
        # once. Flash attention skips the other sequences' cells (masked) instead of computing them.
        params.kv_unified = True
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.swa_full = True  # sliding-window layers keep every position, so a shared prefix stays whole
        return params

    def _check_memory(self, n_ctx: int, slots: int, cells_per_job: int) -> None:
        """Refuse a KV cache that cannot fit, before llama.cpp tries (and the machine swaps or dies)."""
        on_gpu = self.gpu_layers != 0 and self._llama_cpp.llama_supports_gpu_offload()
        free = available_memory()
        if on_gpu or free is None or self._kv_bytes_per_token is None:
            return  # llama.cpp's own allocation failure is turned into the same advice
        kv_cache = n_ctx * self._kv_bytes_per_token
        weights = 0 if self._weights_loaded else self.path.stat().st_size
        if kv_cache + weights + COMPUTE_ROOM > free:
            raise ModelError(
                f"{slots} sequences of up to {cells_per_job} tokens need a KV cache of {human_size(kv_cache)} "
                f"(with the model, {human_size(kv_cache + weights + COMPUTE_ROOM)}) but {human_size(free)} "
                "of memory is available: lower --parallel or --max-tokens"
            )

    def _forget_sequences_from(self, slots: int) -> None:
        """Drop the keys/values of sequences a run will not use: only its slots' cells may stay."""
        for seq_id in range(slots, len(self._kv)):
            if self._kv[seq_id]:
                self._remove(seq_id, 0)

    # -- the KV cache, per sequence ------------------------------------------------------------------

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

    def decode(self, entries: Sequence[_Feed]) -> None:
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


def _kv_bytes_per_token(metadata: Mapping[str, object]) -> int | None:
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


# -- scheduling ------------------------------------------------------------------------------------


@dataclass
class _Feed:
    """What one sequence puts into one llama_decode."""

    seq_id: int
    tokens: list[int]
    all_logits: bool  # a generating sequence: the logits after its token and after each draft
    last_logits: bool  # a prompt chunk: the logits after its last token, when that ends the prompt
    first_row: int = 0


@dataclass
class _Sequence:
    """A job in a slot, from admission to its output."""

    index: int
    job: Job
    seq_id: int
    started: float
    start_step: int
    order: int  # admission order: prompts are evaluated first come, first served
    phase: str = "prompt"  # "wait" (for another sequence's prompt), "prompt", "generate", "appendix"
    feed: list[int] = field(default_factory=list)  # tokens to evaluate next
    drafts: list[int] = field(default_factory=list)  # of ``feed``, the drafted tail
    source: int = -1  # while waiting: the seq_id whose prompt evaluation will hold our prefix
    shared: int = 0  # prompt tokens taken from another sequence's keys/values
    evaluated_prompt: int = 0  # prompt tokens this job evaluated itself
    generated: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    probabilities: dict[str, float] | None = None
    stopped_by: str = "none"
    appendix: str | None = None
    prompt_seconds: float = 0.0
    drafted: int = 0
    accepted: int = 0
    rng: np.random.Generator | None = None
    lookup: _PromptLookup | None = None

    @property
    def prompt(self) -> tuple[int, ...]:
        return self.job.prompt.tokens


class _Scheduler:
    """One ``run``: jobs into slots, one llama_decode per step, outputs as jobs finish."""

    def __init__(self, engine: LlamaEngine, jobs: Sequence[Job], slots: int) -> None:
        self.engine = engine
        self.jobs = jobs
        self.pending: deque[int] = deque(range(len(jobs)))
        self.slots: list[_Sequence | None] = [None] * slots
        self.steps = 0
        self.admitted = 0
        self.finished: list[tuple[int, Output]] = []

    @property
    def done(self) -> bool:
        return not self.pending and all(seq is None for seq in self.slots)

    def step(self) -> list[tuple[int, Output]]:
        # Waits first: a waiting job copies its prefix before a new job may take over the slot it copies from.
        self._resolve_waits()
        self._admit()
        feeds = self._plan()
        if feeds:
            self.engine.decode([feed for _, feed in feeds])
            self.steps += 1
            for seq, feed in feeds:
                self._advance(seq, feed)
        finished, self.finished = self.finished, []
        return finished

    def abandon(self) -> None:
        """Forget the keys/values of unfinished sequences: their bookkeeping may be half done."""
        for seq in self.slots:
            if seq is not None:
                self.engine.drop(seq.seq_id, 0)

    # -- admission and prefix sharing --------------------------------------------------------------

    def _admit(self) -> None:
        while self.pending and None in self.slots:
            self._start(self.pending.popleft(), self.slots.index(None))

    def _start(self, index: int, seq_id: int) -> None:
        job = self.jobs[index]
        seq = _Sequence(index, job, seq_id, started=time.perf_counter(), start_step=self.steps, order=self.admitted)
        self.slots[seq_id] = seq
        self.admitted += 1
        if job.max_tokens == 0:
            seq.appendix = job.answer.appendix("", False)
            if seq.appendix is None:  # nothing to generate and nothing to read
                self.engine.drop(seq_id, 0)  # every slot's cells stay within what the context was sized for
                self._finish(seq)
                return
        sampling = job.sampling
        seq.rng = np.random.default_rng(sampling.seed)
        if self.engine.speculative and sampling.temperature <= 0 and job.max_tokens > 1:
            seq.lookup = _PromptLookup(list(seq.prompt))
        source, length = self._best_now(seq)
        future_source, future_length = self._best_future(seq)
        if future_length >= length + WAIT_FOR_PREFIX:
            seq.phase, seq.source = "wait", future_source
            self.engine.drop(seq_id, 0)  # its old cells would crowd the context while it waits
        else:
            self._take_prefix(seq, source, length)

    def _usable(self, seq: _Sequence, length: int) -> int:
        return min(length, len(seq.prompt) - 1)  # the last prompt token is evaluated: its logits are needed

    def _best_now(self, seq: _Sequence) -> tuple[int, int]:
        """(seq_id, length) of the longest prompt prefix some sequence's cells already hold."""
        best = (seq.seq_id, 0)
        for seq_id in range(len(self.slots)):
            length = self._usable(seq, _common_prefix(self.engine.kv_tokens(seq_id), seq.prompt))
            waiting = (other := self.slots[seq_id]) is not None and other.phase == "wait"
            if length > best[1] and not waiting:
                best = (seq_id, length)
        return best

    def _best_future(self, seq: _Sequence) -> tuple[int, int]:
        """(seq_id, length) of the longest prompt prefix a sequence whose prompt is being evaluated will hold."""
        best = (-1, 0)
        for other in self.slots:
            if other is not None and other is not seq and other.phase == "prompt":
                length = self._usable(seq, _common_prefix(other.prompt, seq.prompt))
                if length > best[1]:
                    best = (other.seq_id, length)
        return best

    def _take_prefix(self, seq: _Sequence, source: int, length: int) -> None:
        seq.shared = self.engine.share(source, seq.seq_id, length)
        seq.feed = list(seq.prompt[seq.shared :])
        seq.evaluated_prompt = len(seq.feed)
        if seq.job.max_tokens == 0 and seq.appendix is not None:
            seq.feed += self.engine.tokenize(seq.appendix)  # read the verdict straight after the prompt
        seq.phase = "prompt"

    def _resolve_waits(self) -> None:
        for seq in self.slots:
            if seq is None or seq.phase != "wait":
                continue
            source = self.slots[seq.source]
            still_evaluating = source is not None and source.phase == "prompt"
            held = self._usable(seq, _common_prefix(self.engine.kv_tokens(seq.source), seq.prompt))
            wanted = self._usable(seq, _common_prefix(source.prompt, seq.prompt)) if source is not None else 0
            if still_evaluating and held < wanted:
                continue
            source_id, length = self._best_now(seq)
            self._take_prefix(seq, source_id, length)

    # -- one step ------------------------------------------------------------------------------------

    def _plan(self) -> list[tuple[_Sequence, _Feed]]:
        """This step's tokens: every generating sequence's next token (and drafts), then prompt chunks."""
        feeds: list[tuple[_Sequence, _Feed]] = []
        used = 0
        for seq in self._by_admission():
            if seq.phase == "generate":
                feeds.append((seq, _Feed(seq.seq_id, seq.feed, all_logits=True, last_logits=True)))
                used += len(seq.feed)
        room = self.engine.step_tokens - used
        budget = min(room, PREFILL_CHUNK) if used else room
        # Appendices first: a few tokens each, and they finish jobs.
        for phase in ("appendix", "prompt"):
            for seq in self._by_admission():
                if seq.phase == phase and budget > 0:
                    chunk = seq.feed[:budget]
                    ends = len(chunk) == len(seq.feed)
                    feeds.append((seq, _Feed(seq.seq_id, chunk, all_logits=False, last_logits=ends)))
                    budget -= len(chunk)
        return feeds

    def _by_admission(self) -> list[_Sequence]:
        return sorted((seq for seq in self.slots if seq is not None), key=lambda seq: seq.order)

    def _advance(self, seq: _Sequence, feed: _Feed) -> None:
        if seq.phase == "generate":
            self._generate(seq, feed)
            return
        del seq.feed[: len(feed.tokens)]
        if seq.feed:
            return
        logits = self.engine.logits(feed.first_row + len(feed.tokens) - 1)
        if seq.phase == "prompt":
            seq.prompt_seconds = time.perf_counter() - seq.started
            if seq.job.max_tokens > 0:
                seq.phase = "generate"
                self._take_tokens(seq, [logits], [])
                return
        seq.probabilities = self.engine._probabilities(logits, seq.job.answer.choices)
        self._finish(seq)

    def _generate(self, seq: _Sequence, feed: _Feed) -> None:
        rows = [self.engine.logits(feed.first_row + i) for i in range(len(feed.tokens))]
        self._take_tokens(seq, rows, seq.drafts)

    def _take_tokens(self, seq: _Sequence, rows: list[np.ndarray], drafts: list[int]) -> None:
        """Sample from each row in turn while the drafts match; roll back the drafts not taken."""
        kept, ended, token = 0, False, -1
        for row, logits in enumerate(rows):
            token = self._next_token(seq, logits)
            ended = self._append(seq, token)
            if ended or row >= len(drafts) or token != drafts[row]:
                break
            kept += 1
        seq.drafted += len(drafts)
        seq.accepted += kept
        if kept < len(drafts):
            self.engine.drop(seq.seq_id, len(self.engine.kv_tokens(seq.seq_id)) - (len(drafts) - kept))
        if ended:
            self._end_generation(seq)
            return
        seq.drafts = self._draft(seq)
        seq.feed = [token, *seq.drafts]

    def _next_token(self, seq: _Sequence, logits: np.ndarray) -> int:
        answer = seq.job.answer
        if _ends_with_probe(seq.text, answer.probe):
            seq.probabilities = self.engine._probabilities(logits, answer.choices)
        assert seq.rng is not None
        return _sample(logits, seq.job.sampling, seq.rng)

    def _append(self, seq: _Sequence, token: int) -> bool:
        """Add a sampled token; True when generation ends with it."""
        if self.engine._is_end(token):
            seq.stopped_by = "eos"
            return True
        seq.generated.append(token)
        if seq.lookup is not None:
            seq.lookup.append(token)
        piece = self.engine._piece(token)
        seq.text += piece
        stop = seq.job.answer.stop.encode()
        if stop in seq.text[-(len(stop) + len(piece)) :] and seq.job.answer.accept_stop(_decode(seq.text)):
            seq.stopped_by = "stop"
            return True
        if len(seq.generated) >= seq.job.max_tokens:
            seq.stopped_by = "length"
            return True
        return False

    def _draft(self, seq: _Sequence) -> list[int]:
        if seq.lookup is None:
            return []
        room = min(self.engine.speculative, seq.job.max_tokens - len(seq.generated) - 1)
        return seq.lookup.draft(room) if room > 0 else []

    def _end_generation(self, seq: _Sequence) -> None:
        """Ask for the appendix that reads the verdict; evaluate it after what the sequence holds."""
        seq.drafts = []
        appendix = seq.job.answer.appendix(_decode(seq.text), seq.probabilities is not None)
        if appendix is None:
            self._finish(seq)
            return
        in_cache = len(self.engine.kv_tokens(seq.seq_id)) - len(seq.prompt)
        seq.appendix = appendix
        seq.feed = seq.generated[in_cache:] + self.engine.tokenize(appendix)  # the last token is not in yet
        seq.phase = "appendix"

    def _finish(self, seq: _Sequence) -> None:
        output = Output(
            text=_decode(seq.text),
            tokens=tuple(seq.generated),
            stopped_by=seq.stopped_by,
            appendix=seq.appendix,
            choice_probabilities=seq.probabilities or {},
            prompt_tokens=len(seq.prompt),
            evaluated_prompt_tokens=seq.evaluated_prompt,
            seconds=time.perf_counter() - seq.started,
            prompt_seconds=seq.prompt_seconds,
            extra={
                "slot": seq.seq_id,
                "start_step": seq.start_step,
                "end_step": self.steps,
                "shared_prompt_tokens": seq.shared,
                "drafted": seq.drafted,
                "accepted": seq.accepted,
            },
        )
        self.finished.append((seq.index, output))
        self.slots[seq.seq_id] = None


class _PromptLookup:
    """Drafts copied from the sequence itself: what followed the latest earlier occurrence of its last n-gram.

    RM-R1 quotes the judged responses at length, so the prompt predicts many tokens; a draft costs
    one batched pass and is exact at greedy decoding (only tokens the model itself picks are kept).
    """

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens
        # Per n: n-gram -> position after its latest occurrence, for n-grams that end before the last token.
        self.index: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in DRAFT_NGRAMS}
        for end in range(1, len(tokens)):
            self._register(end)

    def _register(self, end: int) -> None:
        for n, table in self.index.items():
            if end >= n:
                table[tuple(self.tokens[end - n : end])] = end

    def append(self, token: int) -> None:
        self._register(len(self.tokens))
        self.tokens.append(token)

    def draft(self, length: int) -> list[int]:
        for n, table in self.index.items():
            start = table.get(tuple(self.tokens[-n:]))
            if start is not None:
                return self.tokens[start : start + length]
        return []


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def _decode(text: bytearray) -> str:
    return text.decode("utf-8", "replace")


_PROBE_PATTERNS: dict[str, re.Pattern[bytes]] = {}


def _ends_with_probe(text: bytearray, probe: str) -> bool:
    """Whether the text ends with ``probe`` (whitespace allowed before each ``[`` and at the end)."""
    pattern = _PROBE_PATTERNS.get(probe)
    if pattern is None:
        pattern = re.compile(re.escape(probe).replace(r"\[", r"\s*\[").encode() + rb"\s*$")
        _PROBE_PATTERNS[probe] = pattern
    # Only the tail can complete the probe: constant work per token.
    return pattern.search(bytes(text[-(len(probe) + 8) :])) is not None


def _sample(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> int:
    if sampling.temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / sampling.temperature
    probabilities = np.exp(scaled - scaled.max())
    probabilities /= probabilities.sum()
    if sampling.top_p < 1.0:
        order = np.argsort(-probabilities)
        keep = order[: int(np.searchsorted(np.cumsum(probabilities[order]), sampling.top_p)) + 1]
        mask = np.zeros_like(probabilities)
        mask[keep] = probabilities[keep]
        probabilities = mask / mask.sum()
    return int(rng.choice(len(probabilities), p=probabilities))
