"""Tokens and chat templates on the server: its tokenizer routes (control markup in judged texts never
becomes control tokens where ids are sent) and its own template where the server applies it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rmjudge.engines.http.client import ServerAnswerError
from rmjudge.engines.http.dialects import Call, ServerFacts


def tokenize(call: Call, facts: ServerFacts, text: str, *, special: bool, bos: bool = False) -> list[int]:
    """The server's tokens of ``text``; ``special``: control-token markup in it becomes control tokens."""
    if not text:
        return []
    if facts.dialect == "llama-server":
        answer = call("POST", "/tokenize", {"content": text, "add_special": bos, "parse_special": special})
        return _token_list(answer, facts)
    if facts.dialect == "llama-cpp-python":
        # Always as the completion route will: BOS added where the vocabulary asks, markup parsed.
        ids = _token_list(call("POST", "/extras/tokenize", {"input": text}), facts)
        return ids[1:] if not bos and ids[:1] == [facts.bos_id] else ids
    # vLLM and SGLang tokenize with Hugging Face tokenizers, which always turn a control token's
    # text into the control token: where one may be in the text, it is cut there and the parts
    # tokenized apart, so no part holds a whole control token.
    if not special:
        return [t for part in _split_controls(text, facts) for t in _hf_tokenize(call, facts, part, bos=False)]
    return _hf_tokenize(call, facts, text, bos=bos)


def _hf_tokenize(call: Call, facts: ServerFacts, text: str, *, bos: bool) -> list[int]:
    return _token_list(
        call("POST", "/tokenize", {"model": facts.model, "prompt": text, "add_special_tokens": bos}), facts
    )


_CONTROL = re.compile(r"<\|[^|<>\s]{1,40}\|>|<｜[^｜<>\s]{1,40}｜>|<(?:/?s|bos|eos|pad|unk|start_of_turn|end_of_turn)>")


def _split_controls(text: str, facts: ServerFacts) -> list[str]:
    """``text`` cut inside every piece that looks like control markup (ChatML, DeepSeek, Gemma, Llama, BOS/EOS)."""
    cuts: list[int] = []
    for match in _CONTROL.finditer(text):
        cuts.append(match.start() + 1)
    for token in (facts.bos_token, facts.eos_token):
        if token:
            cuts.extend(m.start() + 1 for m in re.finditer(re.escape(token), text))
    parts, start = [], 0
    for cut in sorted(set(cuts)):
        parts.append(text[start:cut])
        start = cut
    parts.append(text[start:])
    return [p for p in parts if p]


def _token_list(answer: Any, facts: ServerFacts) -> list[int]:
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    if not isinstance(tokens, list):
        raise ServerAnswerError(f"the {facts.dialect} server's tokenizer answered without a token list")
    return [int(t["id"]) if isinstance(t, dict) else int(t) for t in tokens]


def render(call: Call, facts: ServerFacts, messages: Sequence[Mapping[str, str]]) -> str:
    """The prompt text of ``messages`` in the server's own chat template, ready for the reply."""
    body = {"model": facts.model, "messages": [dict(m) for m in messages], "add_generation_prompt": True}
    ids = _token_list(call("POST", "/tokenize", body), facts)
    answer = call("POST", "/detokenize", {"model": facts.model, "tokens": ids})
    text = answer.get("prompt", answer.get("text")) if isinstance(answer, dict) else None
    if not isinstance(text, str):
        raise ServerAnswerError(f"the {facts.dialect} server's /detokenize answered without the text")
    return text
