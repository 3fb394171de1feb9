"""The `openai` backend: any OpenAI-compatible chat completions endpoint (vLLM serve, SGLang,
llama.cpp server, a hosted API).

Each Request becomes one chat completion (n=1) with the request's messages, temperature,
top_p, max_tokens and seed, run `max_concurrency` at a time; results come back in request
order. Connection errors, timeouts, 429 and 5xx are retried with exponential backoff and
jitter; a retryable failure that outlasts `max_retries` raises (the chunk is not committed, and
a resumed run asks again) rather than becoming a stored row. Any other 4xx (e.g. a prompt longer
than the context) is the request's answer: a Generation with text None, finish_reason "error"
and the server's message.

`assistant_prefix` is sent as a final assistant message with `continue_final_message=True,
add_generation_prompt=False` in the request body: vLLM (and SGLang) understand these; other
servers may reject the extra fields (a 4xx, so an error row) or ignore them and start a new
assistant turn.

Seeds are passed as `seed`; vLLM honours them per request, hosted APIs at best try.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from curate.generate import Generation, Request


class _Retryable(Exception):
    pass


class OpenAIBackend:
    """Generates through an OpenAI-compatible server; interface as VLLMBackend."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 label: str | None = None, max_concurrency: int = 8, timeout_s: float = 120,
                 max_retries: int = 6, backoff_s: float = 1.0, fingerprint: str | None = None,
                 max_backoff_s: float = 30.0):
        import openai

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        # Local servers take any key; the client insists on one.
        api_key = os.environ.get(api_key_env) or "EMPTY"
        self._client = openai.OpenAI(base_url=self.base_url, api_key=api_key,
                                     timeout=timeout_s, max_retries=0)
        self._lock = threading.Lock()
        self.retries = 0  # retried calls so far (for logs and tests)
        self.fingerprint = fingerprint or self._served_fingerprint()
        self.model_label = f"{label or model}@{self.fingerprint}"

    # -- identity -------------------------------------------------------------------------

    def model_entry(self) -> dict:
        """The server's /v1/models entry for `model` ({} if the server does not list it)."""
        models = self._with_retries(lambda: self._client.models.list())
        for entry in models.data:
            if entry.id == self.model:
                return entry.model_dump()
        return {}

    def _served_fingerprint(self) -> str:
        """A hash of what is served, not where: the model name and its /v1/models id and
        max_model_len (the URL, `created` and permission ids change with every start)."""
        entry = self.model_entry()
        identity = {"model": self.model, "id": entry.get("id"),
                    "max_model_len": entry.get("max_model_len")}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]

    # -- retries --------------------------------------------------------------------------

    def _with_retries(self, call):
        import openai

        attempt = 0
        while True:
            try:
                return call()
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:  # timeout is a subclass
                error = exc
            except openai.APIStatusError as exc:
                if exc.status_code != 429 and exc.status_code < 500:
                    raise
                error = exc
            if attempt >= self.max_retries:
                raise RuntimeError(f"{self.base_url}: gave up after {attempt + 1} tries: {error}") from error
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
            time.sleep(delay * random.uniform(0.5, 1.0))
            attempt += 1
            with self._lock:
                self.retries += 1

    # -- generation -----------------------------------------------------------------------

    def _body(self, request: Request) -> dict:
        s = request.sampling
        messages = list(request.messages)
        extra = {}
        if request.assistant_prefix:
            messages.append({"role": "assistant", "content": request.assistant_prefix})
            extra = {"continue_final_message": True, "add_generation_prompt": False}
        body = {"model": self.model, "messages": messages, "temperature": s.temperature,
                "top_p": s.top_p, "max_tokens": s.max_tokens, "seed": request.seed, "n": 1,
                "logprobs": False}
        if extra:
            body["extra_body"] = extra
        return body

    def _one(self, request: Request) -> Generation:
        import openai

        body = self._body(request)
        try:
            response = self._with_retries(lambda: self._client.chat.completions.create(**body))
        except openai.APIStatusError as exc:  # a 4xx other than 429: this request's answer
            return Generation(None, None, None, "error", error=f"HTTP {exc.status_code}: {_message(exc)}")
        choice = response.choices[0]
        usage = response.usage
        return Generation(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            finish_reason=choice.finish_reason or "stop",
        )

    def generate(self, requests: list[Request]) -> list[Generation]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests))) as pool:
            return list(pool.map(self._one, requests))  # map keeps request order; raises on give-up


def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return str(exc)
