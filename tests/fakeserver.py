"""A scripted OpenAI-compatible server on 127.0.0.1, for the HTTP engine's fault paths and dialects.

A real HTTP server (``http.server``, one thread per connection) that speaks llama.cpp's llama-server
or vLLM, over a toy model whose tokens are characters (code points; the ChatML markers are control
tokens 100000+). What it "generates" comes from ``script(prompt text)``; the verdict position (after
``[[``) reads ``probability_a`` for A. Faults are queued per request with ``fail_next``.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CONTROL = {"<|im_start|>": 100_000, "<|im_end|>": 100_001, "<s>": 1, "</s>": 2}
CONTROL_TEXT = {v: k for k, v in CONTROL.items()}
BOS, EOS = 1, 2
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tokenize(text: str, *, special: bool) -> list[int]:
    ids: list[int] = []
    i = 0
    while i < len(text):
        for marker, token in CONTROL.items():
            if special and text.startswith(marker, i):
                ids.append(token)
                i += len(marker)
                break
        else:
            ids.append(ord(text[i]))
            i += 1
    return ids


def detokenize(ids: list[int]) -> str:
    return "".join(CONTROL_TEXT.get(t, chr(t) if t < 0x110000 else "") for t in ids)


def chatml(messages: list[dict[str, str]]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


@dataclass
class FakeServer:
    dialect: str = "llama-server"  # or "vllm"
    model: str = "fake/judge-7b"
    script: Callable[[str], str] = lambda prompt: "<eval>A is right.</eval>\n<answer>[[A]]</answer>"
    probability_a: float = 0.75
    slots: int = 4
    context: int = 8192
    delay: float = 0.0  # seconds each completion takes
    fingerprint_shift: float = 0.0  # another "model" under the same name: other probe probabilities
    vocab: Path | None = None  # a GGUF: /props and /tokenize answer with its template and its real vocabulary
    requests: list[tuple[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)  # the Authorization header of each request
    faults: list[str] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._vocabulary: Any = None
        if self.vocab is not None:
            self._vocabulary = _Vocabulary(self.vocab)
        self._connections: list[socket.socket] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake._connections.append(self.connection)

            def do_GET(self) -> None:
                fake._handle(self, "GET", None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                fake._handle(self, "POST", json.loads(self.rfile.read(length) or b"null"))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop as a killed server does: nothing listens, and kept-alive connections are cut."""
        self.httpd.shutdown()
        self.httpd.server_close()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()

    def fail_next(self, kind: str, count: int = 1) -> None:
        """Fault the next ``count`` completion requests: 429, 500, timeout, garbage, no-logprobs, wrong-model, reset."""
        with self._lock:
            self.faults.extend([kind] * count)

    def completions(self) -> list[Any]:
        return [body for path, body in self.requests if path in ("/completion", "/v1/completions")]

    # -- routing -------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str, body: Any) -> None:
        path = handler.path
        with self._lock:
            self.requests.append((path, body))
            self.authorizations.append(handler.headers.get("Authorization"))
        routes: dict[tuple[str, str], Callable[[Any], Any]] = {("GET", "/v1/models"): self._models}
        if self.dialect == "llama-server":
            routes.update(
                {
                    ("GET", "/props"): self._props,
                    ("POST", "/tokenize"): self._llama_tokenize,
                    ("POST", "/completion"): self._completion,
                }
            )
        elif self.dialect == "vllm":
            routes.update(
                {
                    ("GET", "/version"): lambda _: {"version": "0.11.0"},
                    ("POST", "/tokenize"): self._vllm_tokenize,
                    ("POST", "/detokenize"): lambda b: {"prompt": detokenize(b["tokens"])},
                    ("POST", "/v1/completions"): self._completion,
                }
            )
        route = routes.get((method, path))
        if route is None:
            return _send(handler, 404, {"error": {"code": 404, "message": "File Not Found"}})
        if route == self._completion:
            with self._lock:
                fault = self.faults.pop(0) if self.faults and body.get("prompt") != _probe(body) else None
            if fault:
                return self._fault(handler, fault, body)
        try:
            answer = route(body)
        except ValueError as error:
            return _send(handler, 400, {"error": {"code": 400, "message": str(error)}})
        _send(handler, 200, answer)

    def _fault(self, handler: BaseHTTPRequestHandler, fault: str, body: Any) -> None:
        if fault == "400":  # what vLLM answers when logprobs exceeds its --max-logprobs
            return _send(
                handler,
                400,
                {"error": {"message": "Requested sample logprobs of 20, which is greater than max allowed: 5"}},
            )
        if fault in ("429", "500"):
            return _send(handler, int(fault), {"error": {"message": f"fault {fault}"}})
        if fault == "timeout":
            time.sleep(3.0)
            return _send(handler, 500, {"error": {"message": "too late"}})
        if fault == "garbage":
            return _send(handler, 200, None, raw=b"<html>proxy error</html>")
        if fault == "reset":
            handler.close_connection = True
            handler.connection.close()
            return None
        answer = self._completion(body)
        if fault == "no-logprobs":
            if "choices" in answer:
                answer["choices"][0]["logprobs"] = None
            else:
                del answer["completion_probabilities"]
        elif fault == "wrong-model":
            answer["model"] = "someone/else"
        return _send(handler, 200, answer)

    # -- routes --------------------------------------------------------------------------------

    def _models(self, _: Any) -> Any:
        entry: dict[str, Any] = {"id": self.model, "object": "model", "owned_by": "fake"}
        if self.dialect == "vllm":
            entry.update(root=f"/models/{self.model}", max_model_len=self.context)
        return {"object": "list", "data": [entry]}

    def _props(self, _: Any) -> Any:
        if self._vocabulary is not None:
            return self._vocabulary.props(self.slots, self.context)
        return {
            "default_generation_settings": {"n_ctx": self.context, "params": {}},
            "total_slots": self.slots,
            "model_path": f"/models/{self.model.split('/')[-1]}.gguf",
            "chat_template": CHATML,
            "bos_token": "<s>",
            "eos_token": "</s>",
            "build_info": "b0-fake",
        }

    def _llama_tokenize(self, body: Any) -> Any:
        if self._vocabulary is not None:
            return {
                "tokens": self._vocabulary.tokenize(
                    body["content"], body.get("add_special", False), body.get("parse_special", True)
                )
            }
        ids = tokenize(body["content"], special=body.get("parse_special", True))
        return {"tokens": ([BOS] if body.get("add_special") else []) + ids}

    def _vllm_tokenize(self, body: Any) -> Any:
        if "messages" in body:
            ids = tokenize(chatml(body["messages"]), special=True)
        else:  # Hugging Face tokenizers parse control tokens always
            ids = ([BOS] if body.get("add_special_tokens", True) else []) + tokenize(body["prompt"], special=True)
        return {"count": len(ids), "max_model_len": self.context, "tokens": ids}

    def _completion(self, body: Any) -> Any:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            return self._generate(body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _generate(self, body: Any) -> Any:
        prompt = body["prompt"]
        prompt_text = prompt if isinstance(prompt, str) else detokenize(prompt)
        budget = body.get("n_predict", body.get("max_tokens", 16))
        stops = body.get("stop") or []
        planned = self.script(prompt_text)
        # A continuation (the prompt ends with part of what the script says): go on from there.
        done = next((k for k in range(len(planned), 0, -1) if prompt_text.endswith(planned[:k])), 0)
        planned = planned[done:]
        text, entries, finish = "", [], "length"
        for i in range(budget + 1):
            before = prompt_text + text
            if i == len(planned):
                finish = "eos"
                entries.append(self._entry(EOS, "", before))
                break
            if i == budget:
                break
            char = planned[i]
            entries.append(self._entry(ord(char), char, before))
            text += char
            if any(text.endswith(s) for s in stops):
                finish = "word"
                break
        return self._answer(body, text, entries, finish, prompt, stops)

    def _entry(self, token: int, char: str, before: str) -> dict[str, Any]:
        if before.rstrip().endswith("[["):
            p = self.probability_a
            top = [(ord("A"), "A", math.log(p)), (ord("B"), "B", math.log(1 - p))]
        elif before.endswith(_PROBE_TEXT):
            shift = self.fingerprint_shift
            top = [
                (ord(c), c, lp + shift * i) for i, (c, lp) in enumerate(zip(" ABCD", (-0.5, -1.2, -1.9, -2.6, -3.3)))
            ]
        else:
            top = [(token, char, 0.0)]
        return {
            "id": token,
            "token": char,
            "logprob": top[0][2],
            "top_logprobs": [{"id": i, "token": t, "logprob": lp} for i, t, lp in top],
        }

    def _answer(
        self, body: Any, text: str, entries: list[dict[str, Any]], finish: str, prompt: Any, stops: list[str]
    ) -> Any:
        ids = [e["id"] for e in entries]
        if self.dialect == "llama-server":
            shown = text[: -len(next(s for s in stops if text.endswith(s)))] if finish == "word" else text
            return {
                "content": shown,
                "tokens": ids if body.get("return_tokens") else [],
                "stop_type": {"word": "word", "eos": "eos", "length": "limit"}[finish],
                "model": self.model,
                "completion_probabilities": entries,
                "timings": {"prompt_n": len(prompt) if isinstance(prompt, list) else 0, "prompt_ms": 1.0},
            }
        shown = text if finish != "word" or body.get("include_stop_str_in_output") else text[: -len(stops[0])]
        logprobs = {
            "tokens": [CONTROL_TEXT.get(e["id"], e["token"]) for e in entries],
            "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [
                {t["token"] or CONTROL_TEXT.get(t["id"], ""): t["logprob"] for t in e["top_logprobs"]} for e in entries
            ],
            "text_offset": list(range(len(entries))),
        }
        return {
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "text": shown,
                    "logprobs": logprobs,
                    "finish_reason": "length" if finish == "length" else "stop",
                    "stop_reason": stops[0] if finish == "word" else None,
                    "token_ids": ids if body.get("return_token_ids") else None,
                }
            ],
            "usage": {"prompt_tokens": len(prompt) if isinstance(prompt, list) else 0, "completion_tokens": len(ids)},
        }


class _Vocabulary:
    """A GGUF's own template and tokenizer (its vocabulary only: no weights), as llama-server offers them."""

    def __init__(self, path: Path) -> None:
        import llama_cpp
        from llama_cpp import _internals

        from rmjudge import gguf

        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
        self.path = path
        self.template = gguf.chat_template(gguf.read_metadata(path))

    def props(self, slots: int, context: int) -> dict[str, Any]:
        def text(token: int) -> str:
            return self.model.token_get_text(token) if token != -1 else ""

        return {
            "default_generation_settings": {"n_ctx": context, "params": {}},
            "total_slots": slots,
            "model_path": str(self.path),
            "chat_template": self.template,
            "bos_token": text(self.model.token_bos()),
            "eos_token": text(self.model.token_eos()),
        }

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        return list(self.model.tokenize(text.encode(), add_bos=add_special, special=parse_special))


_PROBE_TEXT = "The better answer is"


def _probe(body: Any) -> Any:
    """The engine's fingerprint probe is never faulted: faults are meant for the judging requests."""
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) and prompt.endswith(_PROBE_TEXT) else object()


def _send(handler: BaseHTTPRequestHandler, status: int, data: Any, raw: bytes | None = None) -> None:
    payload = raw if raw is not None else json.dumps(data).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
