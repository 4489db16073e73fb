"""The HTTP engine: judging on OpenAI-compatible servers (llama.cpp's llama-server, vLLM, SGLang,
llama-cpp-python's server), several endpoints at once.

- ``client``: the endpoints, one kept HTTP client, retries, endpoints set aside and given up;
- ``dialects``: what each server offers (recognised from its own routes);
- ``tokenizer``: its tokenizer and chat template; ``completions``: completion requests and answers;
- ``engine``: the ``Engine`` the judge drives (``create`` is the registry's entry point).
"""

from rmjudge.engines.http.client import NoEndpointError, RetryPolicy, ServerAnswerError
from rmjudge.engines.http.engine import HttpEngine, create

__all__ = ["HttpEngine", "NoEndpointError", "RetryPolicy", "ServerAnswerError", "create"]
