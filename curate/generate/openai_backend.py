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

from curate.errors import UserError
from curate.generate import Generation, Request


class _Endpoint:
    """One server of a backend: its client, requests in flight, and until when it is left alone."""

    def __init__(self, url: str, client):
        self.url, self.client = url, client
        self.in_flight = 0
        self.failures = 0  # in a row
        self.down_until = 0.0
        self.answered = 0


class OpenAIBackend:
    """Generates through one or several OpenAI-compatible servers of the same model; interface as
    VLLMBackend.

    With several `base_urls`, each request goes to the server with the fewest requests in flight;
    a server that fails (connection refused or reset, time-out, 429, 5xx) is left alone for a
    back-off that doubles with each failure in a row, and the request is retried at once on
    another, so a server lost mid-run costs only the requests it held."""

    def __init__(self, base_url: str | list[str], model: str, api_key_env: str = "OPENAI_API_KEY",
                 label: str | None = None, max_concurrency: int = 8, timeout_s: float = 120,
                 max_retries: int = 6, backoff_s: float = 1.0, fingerprint: str | None = None,
                 max_backoff_s: float = 30.0):
        import openai

        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self.base_urls = [url.rstrip("/") for url in urls]
        self.base_url = self.base_urls[0]
        self.model = model
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        # Local servers take any key; the client insists on one.
        api_key = os.environ.get(api_key_env) or "EMPTY"
        self.endpoints = [_Endpoint(url, openai.OpenAI(base_url=url, api_key=api_key, timeout=timeout_s,
                                                       max_retries=0)) for url in self.base_urls]
        self._lock = threading.Lock()
        self._turn = 0
        self.retries = 0  # retried calls so far (for logs and tests)
        self.fingerprint = fingerprint or self._served_fingerprint()
        self.model_label = f"{label or model}@{self.fingerprint}"

    # -- identity -------------------------------------------------------------------------

    def model_entry(self) -> dict:
        """The servers' /v1/models entry for `model` ({} if they do not list it). Every server
        that answers at once must serve the same entry; one that does not is asked later."""
        import openai

        entries = {}
        if len(self.endpoints) > 1:
            for endpoint in self.endpoints:
                try:
                    entries[endpoint.url] = _entry(endpoint.client.models.list(), self.model)
                except (openai.APIConnectionError, openai.APIStatusError):
                    continue
        if not entries:
            return _entry(self._with_retries(lambda client: client.models.list()), self.model)
        identities = {url: _identity(self.model, entry) for url, entry in entries.items()}
        if len(set(map(json.dumps, identities.values()))) > 1:
            listed = "; ".join(f"{url}: {identity}" for url, identity in identities.items())
            raise UserError(f"base_urls serve different models as {self.model!r} ({listed})")
        return next(iter(entries.values()))

    def _served_fingerprint(self) -> str:
        """A hash of what is served, not where: the model name and its /v1/models id and
        max_model_len (the URL, `created` and permission ids change with every start)."""
        identity = _identity(self.model, self.model_entry())
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]

    # -- balancing and retries ------------------------------------------------------------

    def _pick(self) -> _Endpoint:
        """The server up now with the fewest requests in flight (in turn among equals); when all
        are backing off, waits for the first to be up again."""
        while True:
            with self._lock:
                now = time.monotonic()
                up = [e for e in self.endpoints if e.down_until <= now]
                if up:
                    self._turn += 1
                    order = {id(e): (i - self._turn) % len(self.endpoints) for i, e in enumerate(self.endpoints)}
                    chosen = min(up, key=lambda e: (e.in_flight, order[id(e)]))
                    chosen.in_flight += 1
                    return chosen
                wait = min(e.down_until for e in self.endpoints) - now
            time.sleep(wait * random.uniform(1.0, 1.5))

    def _with_retries(self, call):
        """`call(client)` on a server picked for it, retried on another (or the same, after its
        back-off) for errors that may pass; other errors raise."""
        import openai

        attempt = 0
        while True:
            endpoint = self._pick()
            try:
                result = call(endpoint.client)
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:  # timeout is a subclass
                error = exc
            except openai.APIStatusError as exc:
                if exc.status_code != 429 and exc.status_code < 500:
                    self._release(endpoint, ok=True)
                    raise
                error = exc
            else:
                self._release(endpoint, ok=True)
                return result
            self._release(endpoint, ok=False)
            if attempt >= self.max_retries:
                where = self.base_url if len(self.endpoints) == 1 else ", ".join(self.base_urls)
                raise RuntimeError(f"{where}: gave up after {attempt + 1} tries: {error}") from error
            attempt += 1
            with self._lock:
                self.retries += 1

    def _release(self, endpoint: _Endpoint, ok: bool) -> None:
        with self._lock:
            endpoint.in_flight -= 1
            if ok:
                endpoint.failures = 0
                endpoint.answered += 1
                return
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** endpoint.failures)
            endpoint.failures += 1
            endpoint.down_until = max(endpoint.down_until, time.monotonic() + delay * random.uniform(0.5, 1.0))

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
            response = self._with_retries(lambda client: client.chat.completions.create(**body))
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


def _entry(models, name: str) -> dict:
    for entry in models.data:
        if entry.id == name:
            return entry.model_dump()
    return {}


def _identity(model: str, entry: dict) -> dict:
    return {"model": model, "id": entry.get("id"), "max_model_len": entry.get("max_model_len")}


def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return str(exc)
