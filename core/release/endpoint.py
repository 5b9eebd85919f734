"""An OpenAI-compatible endpoint, as a client sees it (vLLM, SGLang, `transformers serve`, ...):
health, the model list, chat completions (plain and streamed), and latency at a concurrency.
Torch-free: plain HTTP through httpx2.

Timing of one streamed request:
    ttft       request sent -> the first chunk that carries generated text
    latency    request sent -> the end of the stream
    tokens     the usage the server reports (`stream_options.include_usage`), else the number of
               content chunks (one token each on the servers above)
    tokens/s   tokens / latency, as the in-process measure counts a request's (core.evaluation.latency)
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import httpx2

from weightgate.core.engine.errors import InputError
from weightgate.core.evaluation.latency import _stats

HTTP_TIMEOUT_S = 120.0


class EndpointError(InputError):
    """The endpoint did not answer, or answered what is not an OpenAI-compatible response."""

    exit_code = 1


@dataclass
class Answer:
    text: str
    tokens: int
    seconds: float
    ttft: float | None = None
    finish_reason: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def normalize_url(url: str) -> str:
    """The server's root: http://host:port (a trailing / or /v1 removed)."""
    url = (url or "").strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InputError(f"not an http(s) URL: {url!r}", hint="e.g. --url http://127.0.0.1:8000")
    return url.removesuffix("/v1")


def client(timeout: float = HTTP_TIMEOUT_S) -> httpx2.Client:
    # No proxy from the environment: the endpoint is usually loopback, and a probe must reach it directly.
    return httpx2.Client(timeout=timeout, trust_env=False)


def _request(http: httpx2.Client, method: str, url: str, **kwargs) -> httpx2.Response:
    try:
        response = http.request(method, url, **kwargs)
    except httpx2.HTTPError as exc:
        raise EndpointError(f"{method} {url}: {type(exc).__name__}: {exc}",
                            hint="is the server running? (weightgate release serve VERSION)") from None
    if response.status_code >= 400:
        raise EndpointError(f"{method} {url}: HTTP {response.status_code}: {response.text[:300]}")
    return response


def health(http: httpx2.Client, url: str) -> dict:
    """GET /health: {"ok", "status_code", "body", "ms"} (never raises for an HTTP error status)."""
    began = time.perf_counter()
    try:
        response = http.get(f"{url}/health")
    except httpx2.HTTPError as exc:
        return {"ok": False, "status_code": None, "body": f"{type(exc).__name__}: {exc}",
                "ms": round((time.perf_counter() - began) * 1000, 1)}
    return {"ok": response.status_code == 200, "status_code": response.status_code, "body": response.text[:300],
            "ms": round((time.perf_counter() - began) * 1000, 1)}


def models(http: httpx2.Client, url: str) -> list[str]:
    """The ids GET /v1/models lists."""
    data = _request(http, "GET", f"{url}/v1/models").json()
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise EndpointError(f"GET {url}/v1/models: not an OpenAI model list: {str(data)[:200]}")
    return [str(row.get("id")) for row in rows if isinstance(row, dict) and row.get("id")]


def _body(model: str | None, messages: list[dict], max_tokens: int, stream: bool) -> dict:
    # Greedy, as the eval ran: temperature 0 is greedy decoding on every OpenAI-compatible server.
    body = {"messages": messages, "max_tokens": int(max_tokens), "temperature": 0, "stream": stream}
    if model:
        body["model"] = model
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def chat(http: httpx2.Client, url: str, model: str | None, messages: list[dict], max_tokens: int) -> Answer:
    began = time.perf_counter()
    data = _request(http, "POST", f"{url}/v1/chat/completions", json=_body(model, messages, max_tokens, False)).json()
    seconds = time.perf_counter() - began
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise EndpointError(f"POST {url}/v1/chat/completions: not a chat completion: {str(data)[:200]}") from None
    tokens = (data.get("usage") or {}).get("completion_tokens")
    return Answer(text=text, tokens=int(tokens) if tokens is not None else len(text.split()), seconds=seconds,
                  finish_reason=choice.get("finish_reason"))


def stream_chat(http: httpx2.Client, url: str, model: str | None, messages: list[dict], max_tokens: int) -> Answer:
    """A streamed chat completion, timed from the request to the first text chunk and to the end."""
    body = _body(model, messages, max_tokens, True)
    began = time.perf_counter()
    ttft = None
    parts: list[str] = []
    chunks, usage, finish = 0, None, None
    try:
        with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            if response.status_code >= 400:
                response.read()
                raise EndpointError(f"POST {url}/v1/chat/completions: HTTP {response.status_code}: "
                                    f"{response.text[:300]}")
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    event = json.loads(payload)
                except ValueError:
                    raise EndpointError(f"POST {url}/v1/chat/completions: a stream line is not JSON: "
                                        f"{payload[:200]}") from None
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        if ttft is None:
                            ttft = time.perf_counter() - began
                        parts.append(text)
                        chunks += 1
                    finish = choice.get("finish_reason") or finish
    except httpx2.HTTPError as exc:
        raise EndpointError(f"POST {url}/v1/chat/completions: {type(exc).__name__}: {exc}") from None
    seconds = time.perf_counter() - began
    tokens = (usage or {}).get("completion_tokens")
    return Answer(text="".join(parts), tokens=int(tokens) if tokens is not None else chunks, seconds=seconds,
                  ttft=ttft, finish_reason=finish)


def measure_concurrency(url: str, model: str | None, conversations: list[list[dict]], max_tokens: int,
                        levels, *, requests: int | None = None, progress=None) -> list[dict]:
    """Streamed requests at each concurrency level (cycling through `conversations`), after a warm-up.
    Rows shaped like core.evaluation.latency's (`batch_size` is the concurrency), so its ceilings check applies."""
    levels = sorted({int(level) for level in levels})
    if not levels or levels[0] < 1:
        raise InputError(f"concurrency must be positive integers, got {list(levels)}")
    rows = []
    with client() as http:
        # The first requests pay for lazy initialisation (and a model an idle server unloaded): not latency.
        stream_chat(http, url, model, conversations[0], min(4, max_tokens))
        for step, level in enumerate(levels):
            count = max(requests or 8, 2 * level)
            items = [conversations[i % len(conversations)] for i in range(count)]
            began = time.perf_counter()
            with ThreadPoolExecutor(max_workers=level) as pool:
                answers = list(pool.map(lambda messages: stream_chat(http, url, model, messages, max_tokens), items))
            wall = time.perf_counter() - began
            tokens = sum(a.tokens for a in answers)
            rows.append({"batch_size": level, "concurrency": level, "requests": count,
                         "ttft_ms": _stats([(a.ttft if a.ttft is not None else a.seconds) * 1000 for a in answers]),
                         "latency_ms": _stats([a.seconds * 1000 for a in answers]),
                         "tokens_per_s": _stats([a.tokens / a.seconds if a.seconds > 0 else 0.0 for a in answers]),
                         "throughput_tokens_per_s": round(tokens / wall, 2) if wall else 0.0,
                         "tokens_out": tokens, "seconds": round(wall, 3)})
            if progress is not None:
                progress({"done": step + 1, "total": len(levels), "concurrency": level,
                          "ttft_p50_ms": rows[-1]["ttft_ms"]["p50"], "tokens_per_s": rows[-1]["tokens_per_s"]["p50"]})
    return rows
