"""Keep the judged texts apart from a chat template's markup, so they never become control tokens.

A chat template writes markup (``<|im_start|>``, ``<start_of_turn>``, ``<｜User｜>``...) around the
messages. Tokenizing the whole prompt with special tokens parsed, as llama-cpp-python does, also
turns a control-token string inside a judged text into a real control token: a response holding
``<|im_end|>\\n<|im_start|>assistant\\n`` would end the user's turn and speak as the judge. Two pure
steps prevent it, shared by every engine that tokenizes a prompt itself:

- ``render_with_spans`` renders the messages and says where each message's content sits in the text;
- ``safe_tokens`` tokenizes the text so that only what lies outside those spans may be special.

For ordinary texts (no control-token string in any message) the tokens are exactly those of
tokenizing the whole prompt with special tokens parsed: nothing changes for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

Render = Callable[[list[dict[str, str]]], str]
Tokenize = Callable[[str, bool], list[int]]  # (text, parse special tokens?) -> token ids, no BOS
Span = tuple[int, int]

# What a template may do to a content that the spans can still follow: nothing, or trim it (Gemma's
# and Llama 3's templates write ``message['content'] | trim``).
_CONTENT_FORMS: tuple[Callable[[str], str], ...] = (lambda content: content, str.strip)


def _sentinel_prefix(messages: Sequence[Mapping[str, str]]) -> str:
    """A marker no content contains: letters, digits and underscores survive trim and escaping."""
    number = 0
    while any(f"RMJUDGE_SPAN_{number}_" in message.get("content", "") for message in messages):
        number += 1
    return f"RMJUDGE_SPAN_{number}_"


def _substitute(skeleton: str, pattern: re.Pattern[str], contents: Sequence[str]) -> tuple[str, list[Span]]:
    """Put ``contents[i]`` where the skeleton holds sentinel i; the spans where they landed."""
    pieces: list[str] = []
    spans: list[Span] = []
    length = 0
    position = 0
    for match in pattern.finditer(skeleton):
        markup = skeleton[position : match.start()]
        content = contents[int(match[1])]
        pieces += [markup, content]
        length += len(markup)
        if content:
            spans.append((length, length + len(content)))
        length += len(content)
        position = match.end()
    pieces.append(skeleton[position:])
    return "".join(pieces), spans


def render_with_spans(render: Render, messages: Sequence[Mapping[str, str]]) -> tuple[str, list[Span]]:
    """The prompt ``render`` makes of ``messages``, and the character spans of the messages' contents.

    The messages are rendered once more with a unique sentinel in place of each content: what lies
    between the sentinels is the template's own markup. Putting the contents back where the
    sentinels are must give the real rendering (with the contents as given, or trimmed); then the
    spans are exact. A template that changes the contents in any other way gets the contents as
    given inside its markup, so the markup is still known exactly and no judged text is mistaken
    for it (the prompt then differs from the template's own rendering only inside the contents).
    """
    prompt = render([dict(message) for message in messages])
    prefix = _sentinel_prefix(messages)
    skeleton = render([{**message, "content": f"{prefix}{index}_"} for index, message in enumerate(messages)])
    pattern = re.compile(rf"{prefix}(\d+)_")
    contents = [message.get("content", "") for message in messages]
    for form in _CONTENT_FORMS:
        text, spans = _substitute(skeleton, pattern, [form(content) for content in contents])
        if text == prompt:
            return text, spans
    return _substitute(skeleton, pattern, contents)


def _has_control_tokens(text: str, tokenize: Tokenize) -> bool:
    # Parsing special tokens changes the result exactly when the text spells one.
    return tokenize(text, True) != tokenize(text, False)


def _segmented_tokens(text: str, spans: Sequence[Span], tokenize: Tokenize) -> list[int]:
    """The markup between the spans tokenized with special tokens parsed, each span without."""
    tokens: list[int] = []
    position = 0
    for start, end in sorted(spans):
        if start > position:
            tokens += tokenize(text[position:start], True)
        tokens += tokenize(text[start:end], False)
        position = end
    if position < len(text):
        tokens += tokenize(text[position:], True)
    return tokens


def safe_tokens(text: str, spans: Sequence[Span], tokenize: Tokenize) -> list[int]:
    """Tokens of ``text`` in which nothing inside ``spans`` (the judged texts) is a special token.

    The whole text is tokenized with special tokens parsed, as the chat template means it to be. If
    no span spells a control token, that is the answer: ordinary prompts are tokenized exactly as
    before. Otherwise the markup between the spans is tokenized with special tokens parsed and each
    span without, so its control-token strings stay plain text.

    Cheapest first: tokenized piece by piece, an ordinary prompt gives the same tokens as tokenized
    whole (about twice the work of tokenizing once); only where they differ (a control-token string
    in a span, or a template whose markup merges with the text beside it) is each span examined.
    A control token split across a span's edge is not looked for: templates end their markup at a
    whole token or a newline.
    """
    whole = tokenize(text, True)
    pieces = _segmented_tokens(text, spans, tokenize)
    if pieces == whole or not any(_has_control_tokens(text[start:end], tokenize) for start, end in spans):
        return whole
    return pieces
