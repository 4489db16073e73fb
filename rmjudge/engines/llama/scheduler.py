"""One ``run`` of the llama engine: jobs into slots, one llama_decode per step, outputs as jobs finish.

Prefix sharing (a job starts from the longest prefix any sequence holds, or is about to hold) and
continuous batching (generating sequences advance together while prompt chunks fill the rest of a step).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rmjudge.engines.base import Job, Output
from rmjudge.engines.llama.context import Feed
from rmjudge.engines.llama.drafts import PromptLookup
from rmjudge.engines.llama.sampling import decode_text, ends_with_probe, sample

if TYPE_CHECKING:
    from rmjudge.engines.llama.engine import LlamaEngine

PREFILL_CHUNK = 256  # prompt tokens per step while other sequences decode: how long they may stall
WAIT_FOR_PREFIX = 32  # a job waits for another job's prompt evaluation only to share this many tokens or more


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
    lookup: PromptLookup | None = None

    @property
    def prompt(self) -> tuple[int, ...]:
        return self.job.prompt.tokens


class Scheduler:
    """One ``run``: jobs into slots, one llama_decode per step, outputs as jobs finish."""

    def __init__(self, engine: LlamaEngine, jobs: Sequence[Job], slots: int) -> None:
        self.engine = engine
        self.context = engine.context
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
            self.context.decode([feed for _, feed in feeds])
            self.steps += 1
            for seq, feed in feeds:
                self._advance(seq, feed)
        finished, self.finished = self.finished, []
        return finished

    def abandon(self) -> None:
        """Forget the keys/values of unfinished sequences: their bookkeeping may be half done."""
        for seq in self.slots:
            if seq is not None:
                self.context.drop(seq.seq_id, 0)

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
                self.context.drop(seq_id, 0)  # every slot's cells stay within what the context was sized for
                self._finish(seq)
                return
        sampling = job.sampling
        seq.rng = np.random.default_rng(sampling.seed)
        if self.engine.speculative and sampling.temperature <= 0 and job.max_tokens > 1:
            seq.lookup = PromptLookup(list(seq.prompt))
        source, length = self._best_now(seq)
        future_source, future_length = self._best_future(seq)
        if future_length >= length + WAIT_FOR_PREFIX:
            seq.phase, seq.source = "wait", future_source
            self.context.drop(seq_id, 0)  # its old cells would crowd the context while it waits
        else:
            self._take_prefix(seq, source, length)

    def _usable(self, seq: _Sequence, length: int) -> int:
        return min(length, len(seq.prompt) - 1)  # the last prompt token is evaluated: its logits are needed

    def _best_now(self, seq: _Sequence) -> tuple[int, int]:
        """(seq_id, length) of the longest prompt prefix some sequence's cells already hold."""
        best = (seq.seq_id, 0)
        for seq_id in range(len(self.slots)):
            length = self._usable(seq, common_prefix(self.context.kv_tokens(seq_id), seq.prompt))
            waiting = (other := self.slots[seq_id]) is not None and other.phase == "wait"
            if length > best[1] and not waiting:
                best = (seq_id, length)
        return best

    def _best_future(self, seq: _Sequence) -> tuple[int, int]:
        """(seq_id, length) of the longest prompt prefix a sequence whose prompt is being evaluated will hold."""
        best = (-1, 0)
        for other in self.slots:
            if other is not None and other is not seq and other.phase == "prompt":
                length = self._usable(seq, common_prefix(other.prompt, seq.prompt))
                if length > best[1]:
                    best = (other.seq_id, length)
        return best

    def _take_prefix(self, seq: _Sequence, source: int, length: int) -> None:
        seq.shared = self.context.share(source, seq.seq_id, length)
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
            held = self._usable(seq, common_prefix(self.context.kv_tokens(seq.source), seq.prompt))
            wanted = self._usable(seq, common_prefix(source.prompt, seq.prompt)) if source is not None else 0
            if still_evaluating and held < wanted:
                continue
            source_id, length = self._best_now(seq)
            self._take_prefix(seq, source_id, length)

    # -- one step ------------------------------------------------------------------------------------

    def _plan(self) -> list[tuple[_Sequence, Feed]]:
        """This step's tokens: every generating sequence's next token (and drafts), then prompt chunks."""
        feeds: list[tuple[_Sequence, Feed]] = []
        used = 0
        for seq in self._by_admission():
            if seq.phase == "generate":
                feeds.append((seq, Feed(seq.seq_id, seq.feed, all_logits=True, last_logits=True)))
                used += len(seq.feed)
        room = self.engine.step_tokens - used
        budget = min(room, PREFILL_CHUNK) if used else room
        # Appendices first: a few tokens each, and they finish jobs.
        for phase in ("appendix", "prompt"):
            for seq in self._by_admission():
                if seq.phase == phase and budget > 0:
                    chunk = seq.feed[:budget]
                    ends = len(chunk) == len(seq.feed)
                    feeds.append((seq, Feed(seq.seq_id, chunk, all_logits=False, last_logits=ends)))
                    budget -= len(chunk)
        return feeds

    def _by_admission(self) -> list[_Sequence]:
        return sorted((seq for seq in self.slots if seq is not None), key=lambda seq: seq.order)

    def _advance(self, seq: _Sequence, feed: Feed) -> None:
        if seq.phase == "generate":
            self._generate(seq, feed)
            return
        del seq.feed[: len(feed.tokens)]
        if seq.feed:
            return
        logits = self.context.logits(feed.first_row + len(feed.tokens) - 1)
        if seq.phase == "prompt":
            seq.prompt_seconds = time.perf_counter() - seq.started
            if seq.job.max_tokens > 0:
                seq.phase = "generate"
                self._take_tokens(seq, [logits], [])
                return
        seq.probabilities = self.engine.choice_probabilities(logits, seq.job.answer.choices)
        self._finish(seq)

    def _generate(self, seq: _Sequence, feed: Feed) -> None:
        rows = [self.context.logits(feed.first_row + i) for i in range(len(feed.tokens))]
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
            self.context.drop(seq.seq_id, len(self.context.kv_tokens(seq.seq_id)) - (len(drafts) - kept))
        if ended:
            self._end_generation(seq)
            return
        seq.drafts = self._draft(seq)
        seq.feed = [token, *seq.drafts]

    def _next_token(self, seq: _Sequence, logits: np.ndarray) -> int:
        answer = seq.job.answer
        if ends_with_probe(seq.text, answer.probe):
            seq.probabilities = self.engine.choice_probabilities(logits, answer.choices)
        assert seq.rng is not None
        return sample(logits, seq.job.sampling, seq.rng)

    def _append(self, seq: _Sequence, token: int) -> bool:
        """Add a sampled token; True when generation ends with it."""
        if self.engine.is_end(token):
            seq.stopped_by = "eos"
            return True
        seq.generated.append(token)
        if seq.lookup is not None:
            seq.lookup.append(token)
        piece = self.engine.piece(token)
        seq.text += piece
        stop = seq.job.answer.stop.encode()
        if stop in seq.text[-(len(stop) + len(piece)) :] and seq.job.answer.accept_stop(decode_text(seq.text)):
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
        appendix = seq.job.answer.appendix(decode_text(seq.text), seq.probabilities is not None)
        if appendix is None:
            self._finish(seq)
            return
        in_cache = len(self.context.kv_tokens(seq.seq_id)) - len(seq.prompt)
        seq.appendix = appendix
        seq.feed = seq.generated[in_cache:] + self.engine.tokenize(appendix)  # the last token is not in yet
        seq.phase = "appendix"

    def _finish(self, seq: _Sequence) -> None:
        output = Output(
            text=decode_text(seq.text),
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


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length
