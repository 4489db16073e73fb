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

Modules: ``engine`` (``LlamaEngine``: loading, prompts, tokens, the context's size; ``create`` is the
registry's entry point), ``scheduler`` (one ``run``: slots, prefixes, steps), ``context`` (the KV cache
per sequence and one llama_decode), ``sampling`` and ``drafts`` (the next token, prompt-lookup drafts).
"""

from rmjudge.engines.llama.engine import LlamaEngine, create

__all__ = ["LlamaEngine", "create"]
