"""The OpenAI provider through the real runner against the loopback server: request shape and every fault."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from loopback import Loopback, Reply
from vscbench.errors import MissingExtraError, VscbenchError
from vscbench.models.factory import make_provider
from vscbench.runner.core import ExecStats, Limits, RetryPolicy, execute
from vscbench.types import GenConfig, Request, Response, Status, Turn

MOSS = SHARED_DATA / "images" / "mossbench-sample"
WEBP_NAMED_PNG = MOSS / "benign_131.png"  # a WebP file with a .png name
REAL_PNG = MOSS / "benign_132.png"
POLICY = RetryPolicy(max_attempts=3, base_delay=0.005, max_delay=0.05, timeout_s=1.0)


def ask(
    provider_spec: str, lb: Loopback, requests: list[Request], policy: RetryPolicy = POLICY, **opts: object
) -> tuple[ExecStats, dict[str, Response]]:
    got: dict[str, Response] = {}

    async def go() -> ExecStats:
        p = make_provider(provider_spec, base_url=lb.base_url, **opts)
        try:
            return await execute(
                p,
                requests,
                on_response=lambda r, resp: got.__setitem__(r.item_id, resp),
                limits=Limits(concurrency=8),
                policy=policy,
                progress=False,
            )
        finally:
            await p.aclose()

    return asyncio.run(go()), got


def text_req(key: str) -> Request:
    return Request(item_id=key, turns=(Turn("user", key),))


FAULTS: dict[str, tuple[list[Reply | str], Status, int]] = {
    # key: (replies in order, final status, requests the server sees)
    "rate-limited": ([Reply(status=429, headers={"retry-after-ms": "20"})], Status.OK, 2),
    "server-500": ([Reply(status=500)], Status.OK, 2),
    "server-503-always": ([Reply(status=503)] * 5, Status.ERROR, 3),
    "slow-past-timeout": ([Reply(delay=3.0)], Status.OK, 2),
    "dropped": ([Reply(drop=True)], Status.OK, 2),
    "dropped-always": ([Reply(drop=True)] * 5, Status.ERROR, 3),
    "malformed-json": ([Reply(raw=b'{"choices": [')], Status.ERROR, 1),
    "no-choices": ([Reply(no_choices=True)], Status.ERROR, 1),
    "content-filter": ([Reply(text="", finish_reason="content_filter")], Status.BLOCKED, 1),
    "prompt-filter-400": ([Reply(status=400, finish_reason="content_filter")], Status.BLOCKED, 1),
    "bad-request": ([Reply(status=400, error_message="max_tokens too large")], Status.ERROR, 1),
    "unauthorized": ([Reply(status=401)], Status.ERROR, 1),
    "null-content": ([Reply(text=None)], Status.EMPTY, 1),
    "blank-content": ([Reply(text="  \n")], Status.EMPTY, 1),
    "plain": ([], Status.OK, 1),
}


def test_every_fault_ends_in_its_documented_status_and_none_is_lost(lb: Loopback) -> None:
    lb.script.update({k: list(v[0]) for k, v in FAULTS.items()})
    stats, got = ask("openai-compatible/m", lb, [text_req(k) for k in FAULTS])
    assert set(got) == set(FAULTS)  # none lost
    for key, (_, status, n) in FAULTS.items():
        r = got[key]
        assert r.status is status, (key, r)
        assert lb.counts[key] == n, key
        assert r.attempts == n, key
    assert got["server-503-always"].error and "503" in got["server-503-always"].error
    assert "malformed" in (got["malformed-json"].error or "")
    assert "no choices" in (got["no-choices"].error or "")
    assert "max_tokens too large" in (got["bad-request"].error or "")
    assert got["plain"].text == "OK" and got["plain"].input_tokens == 11 and got["plain"].output_tokens == 7
    assert got["content-filter"].finish_reason == "content_filter"
    assert stats.done == len(FAULTS) and stats.errors == 6


def test_retry_after_is_honoured(lb: Loopback) -> None:
    lb.script["wait"] = [Reply(status=429, headers={"Retry-After": "0.4"})]
    _, got = ask("openai-compatible/m", lb, [text_req("wait")], RetryPolicy(base_delay=0.001, max_delay=5.0))
    calls = lb.calls_for("wait")
    assert got["wait"].status is Status.OK and len(calls) == 2
    assert calls[1].time - calls[0].time >= 0.4


def test_request_shape_images_system_demonstrations(lb: Loopback) -> None:
    req = Request(
        item_id="shape",
        system="Be careful.",
        turns=(
            Turn("user", "demo question", images=(str(REAL_PNG),)),
            Turn("assistant", "demo answer"),
            Turn("user", "shape", images=(str(WEBP_NAMED_PNG),)),
        ),
        config=GenConfig(temperature=0.0, max_tokens=77, seed=5),
    )
    _, got = ask("openai-compatible/m", lb, [req])
    assert got["shape"].status is Status.OK
    body = lb.calls_for("shape")[0].body
    assert (
        body["model"] == "m" and body["temperature"] == 0.0 and body["max_tokens"] == 77 and body["seed"] == 5
    )
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"] == "Be careful."
    assert msgs[2]["content"] == "demo answer"
    last = msgs[3]["content"]
    assert [p["type"] for p in last] == ["image_url", "text"] and last[1]["text"] == "shape"
    url = last[0]["image_url"]["url"]
    assert url.startswith("data:image/webp;base64,")  # the real format, not the .png name
    assert base64.b64decode(url.split(",", 1)[1]) == WEBP_NAMED_PNG.read_bytes()
    assert msgs[1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_bmp_is_reencoded_as_png(lb: Loopback, tmp_path: Path) -> None:
    from PIL import Image

    bmp = tmp_path / "x.jpg"  # a BMP with a misleading name
    Image.new("RGB", (4, 4), (1, 2, 3)).save(bmp, format="BMP")
    _, got = ask("openai-compatible/m", lb, [Request("bmp", (Turn("user", "bmp", images=(str(bmp),)),))])
    assert got["bmp"].status is Status.OK
    url = lb.calls_for("bmp")[0].body["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")


def test_unreadable_image_is_a_permanent_error(lb: Loopback, tmp_path: Path) -> None:
    bad = tmp_path / "nope.png"
    bad.write_bytes(b"not an image at all")
    reqs = [
        Request("junk", (Turn("user", "junk", images=(str(bad),)),)),
        Request("gone", (Turn("user", "gone", images=(str(tmp_path / "missing.png"),)),)),
    ]
    _, got = ask("openai-compatible/m", lb, reqs)
    assert got["junk"].status is Status.ERROR and "nope.png" in (got["junk"].error or "")
    assert got["gone"].status is Status.ERROR and "missing.png" in (got["gone"].error or "")
    assert lb.total == 0


def test_openai_proper_uses_its_key_and_max_completion_tokens(
    lb: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai-123")
    _, got = ask("openai/gpt-x", lb, [text_req("official")])
    call = lb.calls_for("official")[0]
    assert got["official"].status is Status.OK
    assert call.headers["authorization"] == "Bearer sk-test-openai-123"
    assert call.body["max_completion_tokens"] == 512 and "max_tokens" not in call.body
    assert call.body["seed"] == 0


def test_compatible_works_without_a_key(lb: Loopback, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    _, got = ask("openai-compatible/m", lb, [text_req("nokey")])
    assert got["nokey"].status is Status.OK
    assert lb.calls_for("nokey")[0].headers["authorization"] == "Bearer EMPTY"


def test_factory_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(VscbenchError, match="OPENAI_API_KEY"):
        make_provider("openai/gpt-4o-mini")
    with pytest.raises(VscbenchError, match="--base-url"):
        make_provider("openai-compatible/m")
    with pytest.raises(VscbenchError, match="unknown provider"):
        make_provider("mistral/large")
    with pytest.raises(VscbenchError, match="PROVIDER/MODEL"):
        make_provider("gpt-4o")
    with pytest.raises(VscbenchError, match="--base-url is for API providers"):
        make_provider("hf/org/model", base_url="http://x")


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'vscbench\[openai\]'"):
        make_provider("openai-compatible/m", base_url="http://127.0.0.1:9/v1")


def test_describe_has_the_host_only(lb: Loopback) -> None:
    p = make_provider("openai-compatible/m", base_url=f"http://user:pw@127.0.0.1:{lb.port}/v1/secret-path")
    d = p.describe()
    asyncio.run(p.aclose())
    assert d["base_url_host"] == f"127.0.0.1:{lb.port}"
    assert "pw" not in str(d) and "secret-path" not in str(d)


def test_factory_hands_hf_options_to_the_hf_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    seen: dict[str, object] = {}

    class FakeHF:
        def __init__(self, model: str, **kw: object) -> None:
            seen.update(kw, model=model)

    fake = types.ModuleType("vscbench.models.hf")
    fake.HFProvider = FakeHF  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vscbench.models.hf", fake)
    make_provider("hf/org/tiny-vlm", device="cpu", batch_size=4, dtype=None, max_connections=16)
    assert seen == {"model": "org/tiny-vlm", "device": "cpu", "batch_size": 4}
