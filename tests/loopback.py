"""A fault-injecting loopback server that speaks the OpenAI, Anthropic and Gemini HTTP APIs.

Reusable by any test or benchmark: start it on 127.0.0.1 with a random port, point an SDK at
:attr:`Loopback.base_url` (OpenAI / openai-compatible), :attr:`Loopback.root_url` (Anthropic, Gemini), and
decide per request what it answers.

What it answers, in order of precedence for each request:

1. ``script[key]``: a list of replies consumed one per request for that key (the first request for the key
   gets ``script[key][0]``, ...); once used up, the next rule applies;
2. ``respond(call)``: a callback returning a :class:`Reply`, a plain ``str`` (the answer text) or ``None``
   (fall through);
3. ``text``: the canned answer text (default ``"OK"``).

A reply can inject a fault: an HTTP status with headers (429 + ``Retry-After``), a delay (slow answer), a
dropped connection, a raw malformed body, an answer without choices, a provider-specific finish/stop reason
(``content_filter``, ``refusal``, ``SAFETY``) or a Gemini prompt block.

What it records: every request as a :class:`Call` in :attr:`Loopback.calls` (API, path, headers, parsed body,
the item ``key`` and the 1-based request count ``n`` for that key) and a per-key counter :attr:`counts`.
The key is ``key_fn(api, body)``; by default the text of the last user message.

It runs its own event loop in a daemon thread, so it serves synchronous tests, asyncio tests and
subprocesses alike. ``python tests/loopback.py --latency 2`` runs it as a separate process (prints the port
on the first line of stdout); ``GET /_loopback/stats`` returns the counts as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

API_OPENAI = "openai"
API_ANTHROPIC = "anthropic"
API_GOOGLE = "google"


@dataclass
class Reply:
    """One answer, or one fault. Defaults give a normal, successful answer in the API's own shape."""

    #: Answer text; ``None`` sends no content at all (null content / empty content list / no parts).
    text: str | None = "OK"
    #: HTTP status; anything but 200 sends the API's error body with ``error_message``.
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (added to the server's base latency).
    delay: float = 0.0
    #: API-specific finish/stop reason (``content_filter``, ``refusal``, ``SAFETY``); None = normal stop.
    finish_reason: str | None = None
    #: Close the connection without sending anything.
    drop: bool = False
    #: Send these bytes as the body, as they are (e.g. malformed JSON), with status and headers above.
    raw: bytes | None = None
    #: A well-formed answer without choices (OpenAI), content (Anthropic) or candidates (Gemini).
    no_choices: bool = False
    #: Gemini only: ``promptFeedback.blockReason`` (e.g. ``SAFETY``) and no candidates.
    prompt_block: str | None = None
    error_message: str = "injected fault"
    usage: tuple[int, int] = (11, 7)


@dataclass
class Call:
    """One recorded request."""

    api: str
    path: str
    headers: dict[str, str]
    body: Any
    key: str | None
    n: int
    time: float


def last_user_text(api: str, body: Any) -> str | None:
    """The text of the last user message of an OpenAI, Anthropic or Gemini request body."""
    if not isinstance(body, dict):
        return None
    try:
        if api == API_GOOGLE:
            contents = [c for c in body.get("contents", []) if c.get("role", "user") == "user"]
            parts = contents[-1].get("parts", [])
            return "".join(p.get("text", "") for p in parts if "text" in p)
        msgs = [m for m in body.get("messages", []) if m.get("role") == "user"]
        content = msgs[-1].get("content")
        if isinstance(content, str):
            return content
        return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    except (IndexError, AttributeError, TypeError):
        return None


Responder = Callable[[Call], "Reply | str | None"]


class Loopback:
    """The server. Use as a context manager, or call :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        *,
        text: str = "OK",
        respond: Responder | None = None,
        script: dict[str, list[Reply | str]] | None = None,
        latency: float = 0.0,
        key_fn: Callable[[str, Any], str | None] = last_user_text,
        record: bool = True,
        parse: bool = True,
        port: int = 0,
    ) -> None:
        self.text = text
        self.respond = respond
        self.script: dict[str, list[Reply | str]] = dict(script or {})
        self.latency = latency
        self.key_fn = key_fn
        self.record = record
        self.parse = parse
        self.port = port
        #: What ``GET /models`` lists (a served model's identity: change it to act as a new model version).
        self.model_ids: list[str] = ["loopback"]
        self.calls: list[Call] = []
        self.counts: Counter[str] = Counter()
        self.total = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- addresses --------------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (Anthropic and Gemini SDKs add their own ``/v1`` / ``/v1beta``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what an OpenAI-compatible client takes."""
        return self.root_url + "/v1"

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> Loopback:
        self._thread = threading.Thread(target=self._run, name="loopback", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("loopback server did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._aclose(), loop)
            with contextlib.suppress(Exception):
                fut.result(10)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Loopback:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=2048)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        loop.run_until_complete(boot())
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- queries ----------------------------------------------------------------------------------
    def calls_for(self, key: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.key == key]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.counts.clear()
            self.total = 0

    def clean(self) -> None:
        """Back to a fresh server between tests: no calls, no script, no callback, no latency."""
        self.reset()
        self.script.clear()
        self.respond = None
        self.latency = 0.0

    # -- HTTP ---------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await _read_chunked(reader)
                else:
                    n = int(headers.get("content-length", "0") or 0)
                    body = await reader.readexactly(n) if n else b""
                keep = await self._dispatch(method, target, headers, body, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # a cancelled handler (server shutting down) ends quietly
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _dispatch(
        self, method: str, target: str, headers: dict[str, str], raw: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/_loopback/stats":
            with self._lock:
                stats = {"requests": self.total, "by_key": dict(self.counts)}
            return await _send(writer, 200, {}, json.dumps(stats).encode())
        if method == "GET" and path.endswith("/models"):
            data = [{"id": m, "object": "model", "owned_by": "test"} for m in self.model_ids]
            body = {"object": "list", "data": data}
            return await _send(writer, 200, {}, json.dumps(body).encode())
        if method != "POST":
            return await _send(writer, 404, {}, b'{"error": {"message": "not found"}}')
        if path.endswith("/chat/completions"):
            api = API_OPENAI
        elif path.endswith("/messages"):
            api = API_ANTHROPIC
        elif ":generateContent" in path:
            api = API_GOOGLE
        else:
            return await _send(writer, 404, {}, b'{"error": {"message": "not found"}}')
        body: Any = None
        if self.parse:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        key = self.key_fn(api, body) if self.parse else None
        with self._lock:
            self.total += 1
            n = 1
            if key is not None:
                self.counts[key] += 1
                n = self.counts[key]
            call = Call(api, path, headers, body, key, n, time.time())
            if self.record:
                self.calls.append(call)
        reply = self._choose(call)
        delay = self.latency + reply.delay
        if delay > 0:
            await asyncio.sleep(delay)
        if reply.drop:
            writer.transport.abort()
            return False
        if reply.raw is not None:
            return await _send(writer, reply.status, reply.headers, reply.raw)
        model = _model_of(api, path, body)
        payload = _error_body(api, reply) if reply.status != 200 else _answer_body(api, reply, model)
        return await _send(writer, reply.status, reply.headers, json.dumps(payload).encode())

    def _choose(self, call: Call) -> Reply:
        if call.key is not None and call.key in self.script:
            seq = self.script[call.key]
            if call.n <= len(seq):
                return _as_reply(seq[call.n - 1])
        if self.respond is not None:
            got = self.respond(call)
            if got is not None:
                return _as_reply(got)
        return Reply(text=self.text)


def _as_reply(r: Reply | str) -> Reply:
    return Reply(text=r) if isinstance(r, str) else r


def _model_of(api: str, path: str, body: Any) -> str:
    if api == API_GOOGLE:
        return path.rsplit("/", 1)[-1].split(":", 1)[0]
    return str(body.get("model", "loopback")) if isinstance(body, dict) else "loopback"


_REASONS = {
    (API_OPENAI, 429): "rate_limit_exceeded",
    (API_ANTHROPIC, 429): "rate_limit_error",
    (API_GOOGLE, 429): "RESOURCE_EXHAUSTED",
}


def _error_body(api: str, r: Reply) -> dict[str, Any]:
    if api == API_ANTHROPIC:
        etype = _REASONS.get((api, r.status), "api_error" if r.status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": etype, "message": r.error_message}}
    if api == API_GOOGLE:
        status = _REASONS.get((api, r.status), "INTERNAL" if r.status >= 500 else "INVALID_ARGUMENT")
        return {"error": {"code": r.status, "message": r.error_message, "status": status}}
    code = r.finish_reason if r.finish_reason else _REASONS.get((api, r.status))
    return {"error": {"message": r.error_message, "type": "loopback_error", "param": None, "code": code}}


def _answer_body(api: str, r: Reply, model: str) -> dict[str, Any]:
    p, c = r.usage
    now = int(time.time())
    if api == API_ANTHROPIC:
        content = [] if (r.no_choices or r.text is None) else [{"type": "text", "text": r.text}]
        return {
            "id": f"msg_loopback_{now}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": r.finish_reason or "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": p, "output_tokens": c},
        }
    if api == API_GOOGLE:
        out: dict[str, Any] = {
            "usageMetadata": {"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c},
            "modelVersion": model,
        }
        if r.prompt_block:
            out["promptFeedback"] = {"blockReason": r.prompt_block}
            return out
        if r.no_choices:
            return out
        parts = [] if r.text is None else [{"text": r.text}]
        out["candidates"] = [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": r.finish_reason or "STOP",
                "index": 0,
            }
        ]
        return out
    choices = (
        []
        if r.no_choices
        else [
            {
                "index": 0,
                "message": {"role": "assistant", "content": r.text},
                "finish_reason": r.finish_reason or "stop",
                "logprobs": None,
            }
        ]
    )
    return {
        "id": f"chatcmpl-loopback-{now}",
        "object": "chat.completion",
        "created": now,
        "model": model,
        "choices": choices,
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    }


_STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout",
                429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                503: "Service Unavailable", 529: "Overloaded"}  # fmt: skip


async def _send(writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes) -> bool:
    head = [f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, 'Status')}"]
    hdrs = {"content-type": "application/json", "content-length": str(len(body)), "connection": "keep-alive"}
    hdrs.update({k.lower(): v for k, v in headers.items()})
    head += [f"{k}: {v}" for k, v in hdrs.items()]
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
    except (ConnectionError, RuntimeError):
        return False
    return True


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)


def main(argv: list[str] | None = None) -> int:
    """Run as a separate process: prints the port, serves until SIGTERM/SIGINT."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    ap.add_argument("--text", default="OK", help="the canned answer text")
    ap.add_argument("--no-parse", action="store_true", help="do not parse request bodies (no keys, less CPU)")
    a = ap.parse_args(argv)
    server = Loopback(text=a.text, latency=a.latency, record=False, parse=not a.no_parse, port=a.port).start()
    sys.stdout.write(f"{server.port}\n")
    sys.stdout.flush()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
