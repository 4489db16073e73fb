"""``LlamaEngine``: a GGUF loaded once through llama-cpp-python; formats prompts, sizes the context
and hands each ``run`` to the scheduler (``rmjudge.engines.llama.scheduler``)."""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rmjudge import gguf
from rmjudge.chat import render_with_spans, safe_tokens
from rmjudge.engines import EngineOptions
from rmjudge.engines.base import EngineInfo, Job, Output, Prompt
from rmjudge.engines.llama.context import STEP_TOKENS, SequenceContext, kv_bytes_per_token
from rmjudge.engines.llama.sampling import decode_text
from rmjudge.engines.llama.scheduler import PREFILL_CHUNK, Scheduler
from rmjudge.errors import ContextTooLongError, ModelError, UsageError
from rmjudge.system import available_memory, human_size, physical_cores

# Sequences decoded at once when nothing else is asked. On the CPU, measured in bench/bench_throughput.py
# (README, "Many at once"): on a 2-core CPU two sequences judged fastest (1.12x the naive loop; four and
# eight no faster than one), and each one more costs KV memory. With layers on a GPU, where a pass is
# memory-bound, eight sequences cost little more than one (llama.cpp's and vLLM's own batching).
CPU_PARALLEL = 2
GPU_PARALLEL = 8
MIN_CONTEXT = 2048
CONTEXT_STEP = 1024  # contexts are sized in these steps: fewer re-creations as batches grow
APPENDIX_ROOM = 32  # tokens each sequence keeps free for a forced verdict's appendix
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
        parallel=options.parallel,
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
        parallel: int | None = None,
        speculative: int = 0,
        debug: bool = False,
    ) -> None:
        if parallel is not None and parallel < 1:
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
        offloaded = self.gpu_layers != 0 and llama_cpp.llama_supports_gpu_offload()
        self.parallel = parallel or (GPU_PARALLEL if offloaded else CPU_PARALLEL)
        self.speculative = speculative
        # A step holds every generating sequence's token and drafts, and room for prompt chunks.
        self.step_tokens = max(STEP_TOKENS, self.parallel * (1 + speculative) + PREFILL_CHUNK)
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
            parallel=self.parallel,
            versions={"llama_cpp_python": llama_cpp.__version__},
        )
        self._kv_bytes_per_token = kv_bytes_per_token(metadata)
        self._context: SequenceContext | None = None  # created by _ensure_context
        self.n_ctx = 0
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
        return decode_text(bytearray(b"".join(self.piece(token) for token in tokens)))

    def piece(self, token: int) -> bytes:
        """The bytes ``token`` adds to the text."""
        # llama-cpp-python's own token_to_piece returns its whole buffer, NUL padding included.
        size = self._llama_cpp.llama_token_to_piece(self._model.vocab, token, self._piece_buffer, 64, 0, False)
        if size < 0:  # longer than the buffer (rare): ask again with the size it needs
            buffer = ctypes.create_string_buffer(-size)
            size = self._llama_cpp.llama_token_to_piece(self._model.vocab, token, buffer, -size, 0, False)
            return buffer.raw[:size]
        return self._piece_buffer.raw[:size]

    def is_end(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._model.vocab, token))

    def _choice_token_ids(self, choices: tuple[str, ...]) -> list[int]:
        if choices not in self._choice_ids:
            self._choice_ids[choices] = [self.tokenize(choice)[0] for choice in choices]
        return self._choice_ids[choices]

    def choice_probabilities(self, logits: np.ndarray, choices: tuple[str, ...]) -> dict[str, float]:
        """P(each choice) at one position, normalised over the choices' first tokens."""
        picked = logits[self._choice_token_ids(choices)].astype(np.float64)
        weights = np.exp(picked - picked.max())
        return {choice: float(w) for choice, w in zip(choices, weights / weights.sum())}

    # -- running jobs ----------------------------------------------------------------------------

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Output]]:
        if not jobs:
            return
        slots = min(self.parallel, len(jobs))
        self._ensure_context(slots, max(self._cells_per_job(job) for job in jobs))
        scheduler = Scheduler(self, jobs, slots)
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
            self._context.forget_sequences_from(slots)
            return
        n_ctx = max(MIN_CONTEXT, -(-needed // CONTEXT_STEP) * CONTEXT_STEP)
        self._check_memory(n_ctx, slots, cells_per_job)
        self._context = None  # free the old one first: two KV caches at once may not fit
        if not self._weights_loaded:
            self._model = self._load(vocab_only=False)
            self._weights_loaded = True
        self._context = SequenceContext(
            self._llama_cpp,
            self._internals,
            self._model,
            n_ctx=n_ctx,
            sequences=self.parallel,
            step_tokens=self.step_tokens,
            outputs=self.parallel * (1 + self.speculative),
            threads=self.threads,
            debug=self._debug,
        )
        self.n_ctx = n_ctx

    @property
    def context(self) -> SequenceContext:
        """The context the current run's sequences live in (made by ``run``)."""
        assert self._context is not None, "run() makes the context"
        return self._context

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
