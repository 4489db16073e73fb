"""Run a GGUF through llama.cpp: load once, evaluate tokens, generate, read token probabilities.

The judge talks to the small ``Engine`` protocol below, so another backend slots in without
touching it. ``LlamaEngine`` drives llama-cpp-python's low-level API directly because the
high-level completion call gets in the way here:
- its stop-string check re-detokenizes the whole text every token (quadratic on long traces);
- token probabilities need ``logits_all=True`` there (slow prefill, gigabytes); the verdict only
  needs the logits of the last position, read with ``llama_get_logits_ith(ctx, -1)``;
- the context is sized from the prompt plus the budget and grown when a longer prompt comes,
  keeping the loaded weights.
The evaluated prefix is kept between calls: the second order of a pair, and the next pair of a
batch with the same question, only evaluate what differs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rmjudge import gguf
from rmjudge.chat import render_with_spans, safe_tokens
from rmjudge.errors import ContextTooLongError, ModelError

MIN_CONTEXT = 2048


@dataclass(frozen=True)
class Sampling:
    """Decoding parameters. RM-R1's evaluation decodes greedily (temperature 0)."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: list[int]
    prompt_tokens: int
    stopped_by: str  # "stop" (the stop text), "eos" (end of generation token) or "length" (budget)
    # P(choice) at the last place the generated text ended with the probe text, if it did
    choice_probabilities: dict[str, float] | None
    seconds: float
    evaluated_prompt_tokens: int  # how many prompt tokens had to be evaluated (the rest were reused)
    prompt_seconds: float = 0.0  # of ``seconds``, the time spent evaluating the prompt


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str | None  # general.name from the GGUF
    architecture: str | None
    context_length: int | None  # trained context
    chat_template: str | None  # None: the GGUF has none, the plain fallback is used
    metadata: dict[str, object] = field(repr=False, default_factory=dict)


class Engine(Protocol):
    """What the judge needs from a backend."""

    info: ModelInfo

    def chat_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        """Format messages with the model's own chat template, ready to generate the reply."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a continuation (no BOS, special tokens parsed)."""
        ...

    def max_context(self) -> int: ...

    def generate(
        self,
        prompt: list[int],
        *,
        max_tokens: int,
        sampling: Sampling,
        stop: str,
        probe: str,
        choices: tuple[str, ...],
        accept_stop: Callable[[str], bool] | None = None,
    ) -> Generation:
        """Generate until ``stop`` (where ``accept_stop(text so far)`` agrees), an end token, or the budget."""
        ...

    def choice_probabilities(self, tokens: list[int], choices: tuple[str, ...]) -> dict[str, float]:
        """P(next token = each choice) after ``tokens``, normalised over the choices."""
        ...

    def versions(self) -> dict[str, str]: ...


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


def _context_size(needed: int, trained: int | None) -> int:
    """A power of two at least ``needed``: contexts grow in few steps over a batch."""
    size = MIN_CONTEXT
    while size < needed:
        size *= 2
    return min(size, trained) if trained else size


class LlamaEngine:
    """A GGUF loaded once through llama-cpp-python (CPU or GPU)."""

    def __init__(
        self, path: Path, *, gpu_layers: int | None = None, threads: int | None = None, debug: bool = False
    ) -> None:
        metadata = gguf.read_metadata(path)  # rejects non-GGUF and truncated files before llama.cpp sees them
        self.info = ModelInfo(
            path=path,
            name=str(metadata.get("general.name")) if metadata.get("general.name") else None,
            architecture=str(metadata.get("general.architecture") or "") or None,
            context_length=gguf.context_length(metadata),
            chat_template=gguf.chat_template(metadata),
            metadata=metadata,
        )
        import llama_cpp
        import llama_cpp._logger  # installs the log callback that honours the level set below
        from llama_cpp import _internals

        self._llama_cpp = llama_cpp
        self._internals = _internals
        # llama-cpp-python's level table is off by one against ggml's (warnings arrive as errors):
        # without --debug nothing of llama.cpp's log shows; failures surface as exceptions anyway.
        logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if debug else logging.CRITICAL + 1)
        self._debug = debug
        self.threads = threads or physical_cores()
        if gpu_layers is None:
            gpu_layers = -1 if llama_cpp.llama_supports_gpu_offload() else 0
        self.gpu_layers = gpu_layers
        # The vocabulary alone first: formatting, tokenizing and cache look-ups need no weights, so a run
        # served from the verdict cache never reads gigabytes. The weights load on the first evaluation.
        self._model = self._load(vocab_only=True)
        self._weights_loaded = False
        # From the header: a vocabulary-only model does not know its trained context.
        self._trained_context = self.info.context_length or self._load(vocab_only=False).n_ctx_train()
        self._context: Any = None  # llama_cpp._internals.LlamaContext, created by _ensure_context
        self._batch: Any = None
        self._n_ctx = 0
        self._evaluated: list[int] = []  # tokens whose keys/values sit in the context, in order
        self._formatter = self._make_formatter()
        self._choice_ids: dict[tuple[str, ...], list[int]] = {}
        self._piece_buffer = ctypes.create_string_buffer(64)

    def _load(self, vocab_only: bool) -> Any:
        params = self._llama_cpp.llama_model_default_params()
        params.n_gpu_layers = self.gpu_layers
        params.vocab_only = vocab_only
        try:
            return self._internals.LlamaModel(path_model=str(self.info.path), params=params, verbose=self._debug)
        except ValueError as error:
            raise ModelError(
                f"llama.cpp could not load {self.info.path.name} ({error}): "
                "is it a complete GGUF of a supported architecture?"
            ) from None

    # -- formatting and tokens -------------------------------------------------------------

    def _make_formatter(self) -> Any:
        if self.info.chat_template is None:
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def text(token: int) -> str:
            return self._model.token_get_text(token) if token != -1 else ""

        return Jinja2ChatFormatter(
            template=self.info.chat_template,
            eos_token=text(self._model.token_eos()),
            bos_token=text(self._model.token_bos()),
            add_generation_prompt=True,
        )

    def chat_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        if self._formatter is None:
            # The GGUF has no chat template (a base model): plain text, messages separated by blank
            # lines, BOS as the vocabulary asks. Recorded as chat_format "plain" in every judgment.
            prompt = "\n\n".join(m["content"] for m in messages) + "\n\n"
            return self._model.tokenize(prompt.encode(), add_bos=True, special=False)
        # The template writes its own special tokens (BOS included), as llama-cpp-python does; the
        # judged texts inside it never become special tokens.
        prompt, spans = render_with_spans(lambda formatted: self._formatter(messages=formatted).prompt, messages)
        return safe_tokens(prompt, spans, self._tokenize_without_bos)

    def _tokenize_without_bos(self, text: str, special: bool) -> list[int]:
        return self._model.tokenize(text.encode(), add_bos=False, special=special)

    @property
    def chat_format(self) -> str:
        return "gguf" if self._formatter is not None else "plain"

    def tokenize(self, text: str) -> list[int]:
        return self._model.tokenize(text.encode(), add_bos=False, special=True)

    def _piece(self, token: int) -> bytes:
        # llama-cpp-python's own token_to_piece returns its whole buffer, NUL padding included.
        size = self._llama_cpp.llama_token_to_piece(self._model.vocab, token, self._piece_buffer, 64, 0, False)
        if size < 0:  # longer than the buffer (rare): ask again with the size it needs
            buffer = ctypes.create_string_buffer(-size)
            size = self._llama_cpp.llama_token_to_piece(self._model.vocab, token, buffer, -size, 0, False)
            return buffer.raw[:size]
        return self._piece_buffer.raw[:size]

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self._piece(t) for t in tokens).decode("utf-8", "replace")

    def max_context(self) -> int:
        return self._trained_context

    def versions(self) -> dict[str, str]:
        return {"llama_cpp_python": self._llama_cpp.__version__}

    # -- evaluation ------------------------------------------------------------------------

    def _ensure_context(self, needed: int) -> None:
        if needed > self._trained_context:
            raise ContextTooLongError(
                f"input needs {needed} tokens but the model's context is {self._trained_context}",
                needed=needed,
                available=self._trained_context,
            )
        if self._context is not None and needed <= self._n_ctx:
            return
        if not self._weights_loaded:
            self._model = self._load(vocab_only=False)
            self._weights_loaded = True
        llama_cpp = self._llama_cpp
        n_ctx = _context_size(needed, self._trained_context)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = min(n_ctx, 512)
        params.n_ubatch = min(n_ctx, 512)
        params.n_threads = self.threads
        params.n_threads_batch = self.threads
        self._context = None  # free the old one first: two KV caches at once may not fit
        self._context = self._internals.LlamaContext(model=self._model, params=params, verbose=self._debug)
        self._batch = self._internals.LlamaBatch(n_tokens=params.n_batch, embd=0, n_seq_max=1, verbose=self._debug)
        self._n_ctx = n_ctx
        self._n_batch = params.n_batch
        self._evaluated = []

    def _evaluate(self, tokens: list[int]) -> int:
        """Make the context hold exactly ``tokens`` and the logits of the last one ready.

        Reuses the longest common prefix with what is already evaluated; returns how many tokens
        had to be evaluated.
        """
        context = self._context
        assert context is not None
        common = 0
        for old, new in zip(self._evaluated, tokens):
            if old != new:
                break
            common += 1
        common = min(common, len(tokens) - 1)  # re-evaluate at least one token: its logits are needed
        if common < len(self._evaluated):
            if not context.kv_cache_seq_rm(-1, common, -1):
                # Some caches (sliding-window attention, recurrent) cannot drop a tail: start over.
                context.kv_cache_clear()
                common = 0
            del self._evaluated[common:]
        pending = tokens[common:]
        for start in range(0, len(pending), self._n_batch):
            chunk = pending[start : start + self._n_batch]
            self._batch.set_batch(batch=chunk, n_past=len(self._evaluated), logits_all=False)
            try:
                context.decode(self._batch)
            except RuntimeError as error:
                self._evaluated = []
                context.kv_cache_clear()
                raise ModelError(f"llama.cpp failed to evaluate the prompt ({error})") from None
            self._evaluated.extend(chunk)
        return len(pending)

    def _last_logits(self) -> np.ndarray:
        pointer = self._llama_cpp.llama_get_logits_ith(self._context.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self._model.n_vocab(),))

    def _choice_token_ids(self, choices: tuple[str, ...]) -> list[int]:
        if choices not in self._choice_ids:
            self._choice_ids[choices] = [self.tokenize(choice)[0] for choice in choices]
        return self._choice_ids[choices]

    def _probabilities(self, logits: np.ndarray, choices: tuple[str, ...]) -> dict[str, float]:
        picked = logits[self._choice_token_ids(choices)].astype(np.float64)
        weights = np.exp(picked - picked.max())
        return {choice: float(w) for choice, w in zip(choices, weights / weights.sum())}

    def choice_probabilities(self, tokens: list[int], choices: tuple[str, ...]) -> dict[str, float]:
        self._ensure_context(len(tokens))
        self._evaluate(tokens)
        return self._probabilities(self._last_logits(), choices)

    def generate(
        self,
        prompt: list[int],
        *,
        max_tokens: int,
        sampling: Sampling,
        stop: str,
        probe: str,
        choices: tuple[str, ...],
        accept_stop: Callable[[str], bool] | None = None,
    ) -> Generation:
        started = time.perf_counter()
        self._ensure_context(len(prompt) + max_tokens + 32)  # 32: room for a forced verdict
        evaluated = self._evaluate(prompt)
        prompt_seconds = time.perf_counter() - started
        vocab = self._model.vocab
        is_eog = self._llama_cpp.llama_vocab_is_eog
        rng = np.random.default_rng(sampling.seed)
        stop_bytes = stop.encode()
        probe_pattern = re.compile(re.escape(probe).replace(r"\[", r"\s*\[").encode() + rb"\s*$")
        text = bytearray()
        generated: list[int] = []
        probabilities: dict[str, float] | None = None
        stopped_by = "length"
        for _ in range(max_tokens):
            logits = self._last_logits()
            # Only the tail can complete the stop or probe text: constant work per token.
            if probe_pattern.search(bytes(text[-(len(probe) + 8) :])):
                probabilities = self._probabilities(logits, choices)
            token = _sample(logits, sampling, rng)
            if is_eog(vocab, token):
                stopped_by = "eos"
                break
            generated.append(token)
            piece = self._piece(token)
            text += piece
            if stop_bytes in text[-(len(stop_bytes) + len(piece)) :] and (
                accept_stop is None or accept_stop(text.decode("utf-8", "replace"))
            ):
                stopped_by = "stop"
                break
            self._evaluate_next(token)
        return Generation(
            text=text.decode("utf-8", "replace"),
            tokens=generated,
            prompt_tokens=len(prompt),
            stopped_by=stopped_by,
            choice_probabilities=probabilities,
            seconds=time.perf_counter() - started,
            evaluated_prompt_tokens=evaluated,
            prompt_seconds=prompt_seconds,
        )

    def _evaluate_next(self, token: int) -> None:
        self._batch.set_batch(batch=[token], n_past=len(self._evaluated), logits_all=False)
        self._context.decode(self._batch)
        self._evaluated.append(token)


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
