"""The retry/concurrency engine on its own, with scripted in-process providers (no HTTP)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable

import pytest

from vscbench.models.base import PermanentError, TransientError
from vscbench.runner.core import ExecStats, Limits, RetryPolicy, TokenBucket, estimate_tokens, execute
from vscbench.types import GenConfig, Request, Response, Status, Turn

FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01, timeout_s=0.3)


def req(i: int | str, text: str = "q") -> Request:
    return Request(item_id=str(i), turns=(Turn("user", text),))


class Scripted:
    """A provider whose k-th call for an item does ``script[item][k]`` (an exception, a status, or a delay)."""

    spec = "fake/scripted"
    images_in_history = True
    supports_activations = False

    def __init__(self, script: dict[str, list[object]] | None = None, delay: float = 0.0) -> None:
        self.script = script or {}
        self.delay = delay
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.peak = 0

    async def generate(self, request: Request) -> Response:
        self.calls[request.item_id] += 1
        k = self.calls[request.item_id] - 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            step = self.script.get(request.item_id, [])
            action = step[k] if k < len(step) else Status.OK
            if isinstance(action, float):
                await asyncio.sleep(action)
                action = Status.OK
            elif self.delay:
                await asyncio.sleep(self.delay)
            if isinstance(action, BaseException):
                raise action
            assert isinstance(action, Status)
            return Response(item_id=request.item_id, status=action, text="t" if action is Status.OK else "")
        finally:
            self.in_flight -= 1

    def describe(self) -> dict[str, object]:
        return {"provider": "fake"}

    async def aclose(self) -> None:
        return None


def run(
    provider: Scripted,
    requests: list[Request],
    policy: RetryPolicy = FAST,
    limits: Limits = Limits(),
    on: Callable[[Request, Response], None] | None = None,
) -> tuple[ExecStats, dict[str, Response]]:
    got: dict[str, Response] = {}

    def on_response(r: Request, resp: Response) -> None:
        assert r.item_id not in got, "one response per request"
        got[r.item_id] = resp
        if on is not None:
            on(r, resp)

    stats = asyncio.run(
        execute(provider, requests, on_response=on_response, limits=limits, policy=policy, progress=False)
    )
    return stats, got


def test_each_failure_kind_ends_in_its_documented_status() -> None:
    script: dict[str, list[object]] = {
        "transient_then_ok": [TransientError("503", status_code=503), Status.OK],
        "timeout_then_ok": [5.0, Status.OK],
        "always_transient": [TransientError("429", status_code=429)] * 10,
        "permanent": [PermanentError("HTTP 400: bad", status_code=400), Status.OK],
        "bug": [KeyError("oops"), Status.OK],
        "blocked": [Status.BLOCKED],
        "empty": [Status.EMPTY],
    }
    p = Scripted(script)
    stats, got = run(p, [req(k) for k in [*script, "plain"]])
    assert set(got) == {*script, "plain"}
    assert got["transient_then_ok"].status is Status.OK and got["transient_then_ok"].attempts == 2
    assert got["timeout_then_ok"].status is Status.OK and got["timeout_then_ok"].attempts == 2
    e = got["always_transient"]
    assert e.status is Status.ERROR and e.attempts == FAST.max_attempts and e.error == "429"
    assert p.calls["always_transient"] == FAST.max_attempts
    assert got["permanent"].status is Status.ERROR and p.calls["permanent"] == 1
    assert got["permanent"].error == "HTTP 400: bad"
    assert got["bug"].status is Status.ERROR and "KeyError" in (got["bug"].error or "")
    assert p.calls["bug"] == 1
    assert got["blocked"].status is Status.BLOCKED
    assert got["empty"].status is Status.EMPTY
    assert got["plain"].latency_s is not None
    assert (stats.done, stats.ok, stats.blocked, stats.empty, stats.errors) == (8, 3, 1, 1, 3)
    assert stats.retries == 1 + 1 + (FAST.max_attempts - 1)


def test_timeout_exhaustion_says_timeout() -> None:
    p = Scripted({"slow": [5.0, 5.0]})
    _, got = run(p, [req("slow")], policy=RetryPolicy(max_attempts=2, base_delay=0.001, timeout_s=0.05))
    assert got["slow"].status is Status.ERROR
    assert "timeout" in (got["slow"].error or "") and got["slow"].attempts == 2


def test_concurrency_is_bounded_and_used() -> None:
    p = Scripted(delay=0.01)
    stats, got = run(p, [req(i) for i in range(40)], limits=Limits(concurrency=5))
    assert len(got) == 40 and stats.done == 40
    assert p.peak == 5


def test_on_response_failure_stops_the_run_and_propagates() -> None:
    p = Scripted(delay=0.001)
    seen: list[str] = []

    def boom(r: Request, resp: Response) -> None:
        seen.append(r.item_id)
        if len(seen) == 3:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        run(p, [req(i) for i in range(50)], limits=Limits(concurrency=2), on=boom)
    assert len(seen) < 50


def test_delay_grows_is_capped_and_honours_retry_after() -> None:
    pol = RetryPolicy(base_delay=1.0, max_delay=8.0)
    rng = random.Random(1)
    for attempt, window in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        d = pol.delay(attempt, rng=rng)
        assert window / 2 <= d <= window
    assert pol.delay(1, retry_after=5.0, rng=rng) >= 5.0
    assert pol.delay(1, retry_after=500.0, rng=rng) == 8.0  # capped at max_delay


def test_empty_request_list_is_fine() -> None:
    stats, got = run(Scripted(), [])
    assert stats.done == 0 and got == {}


def test_rate_limits_let_everything_through() -> None:
    p = Scripted()
    stats, got = run(
        p, [req(i, "x" * 40) for i in range(5)], limits=Limits(concurrency=3, rpm=6000, tpm=10**7)
    )
    assert stats.ok == 5 and len(got) == 5


def test_token_bucket_debt_slows_the_next_taker() -> None:
    async def go() -> float:
        b = TokenBucket(per_minute=60.0)  # 1 per second, capacity 1
        await b.take(1)
        assert b.level == pytest.approx(0.0, abs=0.05)
        b.give_back(-3)  # the request cost 3 more than estimated
        assert b.level < -2.0  # refill since take() is at most ~1 even on a loaded machine
        return b.level

    assert asyncio.run(go()) < 0


def test_estimate_tokens_counts_text_images_and_budget() -> None:
    r = Request(
        item_id="a",
        turns=(Turn("user", "x" * 400, images=("a.png",)),),
        system="y" * 40,
        config=GenConfig(max_tokens=100),
    )
    assert estimate_tokens(r) == 110 + 800 + 100


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        run(Scripted(), [req(1)], limits=Limits(concurrency=0))


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    p = Scripted({"1": [TransientError("x"), Status.OK]})
    run(p, [req(i) for i in range(3)])  # progress=False
    assert capsys.readouterr().err == ""
    asyncio.run(
        execute(p, [req(i) for i in range(3)], on_response=lambda r, s: None, progress=None, policy=FAST)
    )
    assert capsys.readouterr().err == ""  # stderr is not a terminal under pytest
    asyncio.run(
        execute(
            p, [req(i) for i in range(3)], on_response=lambda r, s: None, progress=True, description="demo"
        )
    )
    err = capsys.readouterr().err
    assert "demo" in err and "3/3" in err and "errors 0" in err
