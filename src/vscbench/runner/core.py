"""Execute requests against a provider: bounded concurrency, rate limits, the project's ONE retry policy.

Invariants of :func:`execute`:

- every request yields exactly one call of ``on_response`` (nothing is lost, nothing is duplicated), unless
  the whole execution is cancelled or ``on_response`` itself raises (then the rest is cancelled and the
  exception propagates; what was already handed over stays handed over);
- a response's status is ``ok``/``blocked``/``empty`` from the provider, or ``error`` with the last error
  message and the number of attempts, after retries are exhausted or on the first permanent failure;
- at most ``limits.concurrency`` requests are in flight; with ``rpm``/``tpm`` the attempts (retries included)
  are paced by token buckets.

Retry policy: a :class:`TransientError` (429, 408, 409, 5xx, dropped connection) or a per-request timeout is
retried up to ``max_attempts`` attempts in all, waiting ``base_delay * 2**(k-1)`` (k = attempts so far) capped
at ``max_delay``, with jitter (a uniform draw from the upper half of that window); a server's ``Retry-After``
is honoured when longer (up to ``max_delay``). A :class:`PermanentError` (other 4xx, unreadable answers) is not
retried; neither is any other exception from a provider (a bug must not be hammered), which is recorded as an
error with its type name.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vscbench.models.base import PermanentError, Provider, ProviderError, TransientError
from vscbench.types import Request, Response, Status


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request. ``timeout_s`` = ``inf`` disables the per-request timeout."""

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    timeout_s: float = 120.0

    @classmethod
    def for_model(cls, model: str, max_attempts: int, timeout_s: float | None = None) -> RetryPolicy:
        """The policy for the ``model`` spec: ``timeout_s`` None means the default (120 s), except for an
        in-process ``hf/`` model, which is never timed out unless asked to; 0 or less means no timeout."""
        if timeout_s is None:
            timeout_s = math.inf if model.startswith("hf/") else cls().timeout_s
        return cls(max_attempts=max_attempts, timeout_s=math.inf if timeout_s <= 0 else timeout_s)

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        window = min(self.max_delay, self.base_delay * (2.0 ** (attempt - 1)))
        draw = (rng or random).uniform(window / 2.0, window)
        if retry_after is not None:
            draw = max(draw, min(retry_after, self.max_delay))
        return max(0.0, draw)


@dataclass(frozen=True)
class Limits:
    """Concurrency and optional requests-per-minute / tokens-per-minute budgets."""

    concurrency: int = 16
    rpm: float | None = None
    tpm: float | None = None


@dataclass
class ExecStats:
    """What happened in one :func:`execute` call."""

    done: int = 0
    ok: int = 0
    blocked: int = 0
    empty: int = 0
    errors: int = 0
    retries: int = 0
    wall_s: float = 0.0

    def count(self, status: Status) -> None:
        self.done += 1
        if status is Status.OK:
            self.ok += 1
        elif status is Status.BLOCKED:
            self.blocked += 1
        elif status is Status.EMPTY:
            self.empty += 1
        else:
            self.errors += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "ok": self.ok,
            "blocked": self.blocked,
            "empty": self.empty,
            "errors": self.errors,
            "retries": self.retries,
            "wall_s": round(self.wall_s, 3),
        }


class TokenBucket:
    """A per-minute budget refilled continuously, holding at most one second's worth (at least 1).

    ``take(n)`` waits until the bucket holds ``min(n, capacity)`` and then removes ``n`` (it may go below zero,
    so a request larger than the capacity still passes and the debt slows later ones). Waiters are served in
    arrival order.
    """

    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self._t = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._t) * self.rate)
        self._t = now

    async def take(self, n: float = 1.0) -> None:
        async with self._lock:
            need = min(n, self.capacity)
            while True:
                self._refill()
                if self.level >= need:
                    self.level -= n
                    return
                await asyncio.sleep((need - self.level) / self.rate)

    def give_back(self, n: float) -> None:
        """Return ``n`` (negative: take more) after the real cost is known."""
        self._refill()
        self.level = min(self.capacity, self.level + n)


def estimate_tokens(request: Request) -> int:
    """A pessimistic token count for TPM pacing: ~4 characters a token, ~800 per image, plus max_tokens."""
    chars = len(request.system or "") + sum(len(t.text) for t in request.turns)
    images = sum(len(t.images) for t in request.turns)
    return chars // 4 + 800 * images + request.config.max_tokens


def _progress_wanted(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _Progress:
    """A rich progress bar on stderr (done/total, rate, ETA, retries, errors), or nothing."""

    def __init__(self, enabled: bool, total: int, description: str) -> None:
        self._bar: Any = None
        self._task: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("retries {task.fields[retries]}  errors {task.fields[errors]}"),
            console=Console(stderr=True),
            refresh_per_second=4,
        )
        self._task = self._bar.add_task(description or "requests", total=total, rate="", retries=0, errors=0)
        self._bar.start()

    def update(self, stats: ExecStats, started: float) -> None:
        if self._bar is None:
            return
        elapsed = time.monotonic() - started
        rate = f"{stats.done / elapsed:.1f}/s" if elapsed > 0 else ""
        self._bar.update(
            self._task, completed=stats.done, rate=rate, retries=stats.retries, errors=stats.errors
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


async def execute(
    provider: Provider,
    requests: Iterable[Request],
    *,
    on_response: Callable[[Request, Response], None],
    limits: Limits = Limits(),
    policy: RetryPolicy = RetryPolicy(),
    progress: bool | None = None,
    description: str = "",
) -> ExecStats:
    """Send every request through ``provider`` and hand each final response to ``on_response``.

    ``on_response`` runs in the event loop, once per request, in completion order (commit there).
    See the module docstring for the retry policy and the invariants.
    """
    if limits.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if policy.max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    reqs = list(requests)
    stats = ExecStats()
    started = time.monotonic()
    rpm = TokenBucket(limits.rpm) if limits.rpm else None
    tpm = TokenBucket(limits.tpm) if limits.tpm else None
    bar = _Progress(_progress_wanted(progress), len(reqs), description)
    source = iter(reqs)

    async def attempt_loop(req: Request) -> Response:
        last: ProviderError | None = None
        estimate = estimate_tokens(req) if tpm else 0
        for attempt in range(1, policy.max_attempts + 1):
            if rpm is not None:
                await rpm.take(1)
            if tpm is not None:
                await tpm.take(estimate)
            t0 = time.monotonic()
            try:
                if math.isinf(policy.timeout_s):
                    resp = await provider.generate(req)
                else:
                    async with asyncio.timeout(policy.timeout_s):
                        resp = await provider.generate(req)
            except TimeoutError:
                last = TransientError(f"no answer within the {policy.timeout_s:g}s timeout")
            except TransientError as exc:
                last = exc
            except PermanentError as exc:
                return _error(req, str(exc), attempt, exc.status_code)
            except Exception as exc:  # a provider bug: record it, do not hammer
                return _error(req, f"{type(exc).__name__}: {exc}", attempt, None)
            else:
                if tpm is not None and resp.input_tokens is not None and resp.output_tokens is not None:
                    tpm.give_back(estimate - (resp.input_tokens + resp.output_tokens))
                resp.item_id = req.item_id  # the request's identity is authoritative
                resp.attempts = attempt
                if resp.latency_s is None:
                    resp.latency_s = round(time.monotonic() - t0, 4)
                return resp
            if attempt < policy.max_attempts:
                stats.retries += 1
                bar.update(stats, started)
                await asyncio.sleep(policy.delay(attempt, last.retry_after))
        assert last is not None
        return _error(req, str(last), policy.max_attempts, last.status_code)

    async def worker() -> None:
        for req in source:
            resp = await attempt_loop(req)
            on_response(req, resp)
            stats.count(resp.status)
            bar.update(stats, started)

    n_workers = min(limits.concurrency, len(reqs))
    tasks = [asyncio.create_task(worker()) for _ in range(n_workers)]
    try:
        if tasks:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            for t in done:
                exc = t.exception()
                if exc is not None:
                    raise exc
    finally:
        for t in tasks:
            t.cancel()
        stats.wall_s = time.monotonic() - started
        bar.close()
    return stats


def _error(req: Request, message: str, attempts: int, status_code: int | None) -> Response:
    return Response(
        item_id=req.item_id,
        status=Status.ERROR,
        error=message or "unknown error",
        attempts=attempts,
        raw={"status_code": status_code} if status_code is not None else {},
    )
