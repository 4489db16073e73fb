"""Prompt-lookup drafts (``speculative``): tokens the sequence itself predicts, verified in one batched pass."""

from __future__ import annotations

DRAFT_NGRAMS = (3, 2)  # n-gram lengths a draft is looked up by, longest first


class PromptLookup:
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
