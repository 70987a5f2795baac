"""Anthropic and Gemini request shapes and statuses, through their SDKs, against the loopback server."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from loopback import Loopback, Reply
from vscbench.errors import VscbenchError
from vscbench.models.factory import make_provider
from vscbench.runner.core import Limits, RetryPolicy, execute
from vscbench.types import GenConfig, Request, Response, Status, Turn

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

MOSS = SHARED_DATA / "images" / "mossbench-sample"
WEBP_NAMED_PNG = MOSS / "benign_131.png"
REAL_PNG = MOSS / "benign_132.png"
POLICY = RetryPolicy(max_attempts=3, base_delay=0.005, max_delay=0.05, timeout_s=1.0)
ANTHROPIC_KEY = "sk-ant-test-key-0001"
GEMINI_KEY = "gemini-test-key-0002"


@pytest.fixture
def lb(server: Loopback, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loopback]:
    server.clean()
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    yield server


def ask(spec: str, lb: Loopback, requests: list[Request]) -> dict[str, Response]:
    got: dict[str, Response] = {}

    async def go() -> None:
        p = make_provider(spec, base_url=lb.root_url)
        try:
            await execute(
                p,
                requests,
                on_response=lambda r, resp: got.__setitem__(r.item_id, resp),
                limits=Limits(concurrency=4),
                policy=POLICY,
                progress=False,
            )
        finally:
            await p.aclose()

    asyncio.run(go())
    return got


def shape_request(key: str) -> Request:
    return Request(
        item_id=key,
        system="Be careful.",
        turns=(
            Turn("user", "demo question", images=(str(REAL_PNG),)),
            Turn("assistant", "demo answer"),
            Turn("user", key, images=(str(WEBP_NAMED_PNG),)),
        ),
        config=GenConfig(temperature=0.0, max_tokens=64, seed=3),
    )


def text_req(key: str) -> Request:
    return Request(item_id=key, turns=(Turn("user", key),))


def _sdk_takes_temperature() -> bool:
    import inspect

    import anthropic

    client = anthropic.AsyncAnthropic(api_key="x")
    return "temperature" in inspect.signature(client.messages.create).parameters


# -- Anthropic ----------------------------------------------------------------------------------------
def test_anthropic_request_shape(lb: Loopback) -> None:
    got = ask("anthropic/claude-x", lb, [shape_request("a-shape")])
    assert got["a-shape"].status is Status.OK and got["a-shape"].text == "OK"
    call = lb.calls_for("a-shape")[0]
    assert call.path == "/v1/messages"
    assert ANTHROPIC_KEY in call.headers.get("x-api-key", "") + call.headers.get("authorization", "")
    body = call.body
    assert body["model"] == "claude-x" and body["max_tokens"] == 64
    assert body["system"] == "Be careful." and "seed" not in body
    # SDK 2.x speaks an API version that rejects sampling parameters: sent only where the SDK takes them
    if _sdk_takes_temperature():
        assert body["temperature"] == 0.0
    else:
        assert "temperature" not in body and "top_p" not in body
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    last = body["messages"][2]["content"]
    assert [b["type"] for b in last] == ["image", "text"] and last[1]["text"] == "a-shape"
    src = last[0]["source"]
    assert src["type"] == "base64" and src["media_type"] == "image/webp"
    assert base64.b64decode(src["data"]) == WEBP_NAMED_PNG.read_bytes()
    assert body["messages"][0]["content"][0]["source"]["media_type"] == "image/png"


def test_anthropic_statuses(lb: Loopback) -> None:
    lb.script.update(
        {
            "a-refusal": [Reply(text="", finish_reason="refusal")],
            "a-overloaded": [Reply(status=529)],
            "a-429": [Reply(status=429, headers={"retry-after": "0"})],
            "a-empty": [Reply(text=None)],
            "a-bad": [Reply(status=400)],
            "a-malformed": [Reply(raw=b"<html>oops")],
        }
    )
    got = ask("anthropic/claude-x", lb, [text_req(k) for k in [*lb.script, "a-ok"]])
    assert got["a-refusal"].status is Status.BLOCKED and got["a-refusal"].finish_reason == "refusal"
    assert got["a-overloaded"].status is Status.OK and got["a-overloaded"].attempts == 2
    assert got["a-429"].status is Status.OK and lb.counts["a-429"] == 2
    assert got["a-empty"].status is Status.EMPTY
    assert got["a-bad"].status is Status.ERROR and lb.counts["a-bad"] == 1
    assert got["a-malformed"].status is Status.ERROR
    assert got["a-ok"].status is Status.OK and got["a-ok"].input_tokens == 11


def test_anthropic_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(VscbenchError, match="ANTHROPIC_API_KEY"):
        make_provider("anthropic/claude-x")


# -- Google -------------------------------------------------------------------------------------------
def test_google_request_shape(lb: Loopback) -> None:
    got = ask("google/gemini-x", lb, [shape_request("g-shape")])
    assert got["g-shape"].status is Status.OK and got["g-shape"].text == "OK"
    call = lb.calls_for("g-shape")[0]
    assert call.path.endswith("/models/gemini-x:generateContent")
    assert call.headers.get("x-goog-api-key") == GEMINI_KEY
    body = call.body
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    parts = body["contents"][2]["parts"]
    inline = parts[0].get("inlineData") or parts[0].get("inline_data")
    assert (inline.get("mimeType") or inline.get("mime_type")) == "image/webp"
    data = inline["data"]
    assert base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)) == WEBP_NAMED_PNG.read_bytes()
    assert parts[1]["text"] == "g-shape"
    cfg = body["generationConfig"]
    assert cfg["temperature"] == 0.0 and cfg["maxOutputTokens"] == 64 and cfg["seed"] == 3
    sysi = body["systemInstruction"]
    assert "Be careful." in str(sysi)


def test_google_statuses(lb: Loopback) -> None:
    lb.script.update(
        {
            "g-safety": [Reply(text="", finish_reason="SAFETY")],
            "g-prohibited": [Reply(text="partial", finish_reason="PROHIBITED_CONTENT")],
            "g-prompt-block": [Reply(prompt_block="SAFETY")],
            "g-no-candidates": [Reply(no_choices=True)],
            "g-500": [Reply(status=500)],
            "g-429": [Reply(status=429, headers={"retry-after": "0"})],
            "g-bad": [Reply(status=400)],
            "g-max-tokens": [Reply(text="cut", finish_reason="MAX_TOKENS")],
        }
    )
    got = ask("google/gemini-x", lb, [text_req(k) for k in lb.script])
    assert got["g-safety"].status is Status.BLOCKED and got["g-safety"].finish_reason == "SAFETY"
    assert got["g-prohibited"].status is Status.BLOCKED
    assert got["g-prompt-block"].status is Status.BLOCKED
    assert got["g-prompt-block"].finish_reason == "prompt_blocked:SAFETY"
    assert got["g-no-candidates"].status is Status.EMPTY
    assert got["g-500"].status is Status.OK and lb.counts["g-500"] == 2
    assert got["g-429"].status is Status.OK and lb.counts["g-429"] == 2
    assert got["g-bad"].status is Status.ERROR and lb.counts["g-bad"] == 1
    assert got["g-max-tokens"].status is Status.OK and got["g-max-tokens"].text == "cut"


def test_google_takes_either_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(VscbenchError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        make_provider("google/gemini-x")
    monkeypatch.setenv("GOOGLE_API_KEY", "k-google")
    p = make_provider("google/gemini-x")
    assert p.describe()["base_url_host"] == "generativelanguage.googleapis.com"
    asyncio.run(p.aclose())


@pytest.mark.parametrize(
    ("config", "warned"),
    [
        (GenConfig(temperature=0.7, top_p=0.9, max_tokens=16), "--temperature 0.7, --top-p 0.9 not sent"),
        (GenConfig(max_tokens=16), None),
    ],
)
def test_anthropic_unsent_sampling_is_warned_and_recorded(
    lb: Loopback,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    config: GenConfig,
    warned: str | None,
) -> None:
    from conftest import METADATA
    from vscbench.runner.run import run_generation
    from vscbench.runner.select import Selection
    from vscbench.store import Store

    provider = make_provider("anthropic/claude-x", base_url=lb.root_url)
    provider.sampling_params = False  # type: ignore[attr-defined]  # as with an SDK that cannot send them
    res = run_generation(
        "anthropic/claude-x", base_url=lb.root_url, metadata=str(METADATA), root=str(tmp_path / "root"),
        store=tmp_path / "s.sqlite", selection=Selection(settings=("text",), limit=2), config=config,
        policy=POLICY, progress=False, provider=provider,
    )  # fmt: skip  (the client's loop ends with the run; nothing left to close)
    err = capsys.readouterr().err
    assert res.counts["ok"] == 2
    assert all("temperature" not in c.body and "top_p" not in c.body for c in lb.calls)
    expected = {"temperature": config.temperature} | ({"top_p": 0.9} if config.top_p else {})
    with Store(tmp_path / "s.sqlite") as st:
        m = st.get_run(res.run_id).manifest
    assert m["sampling_not_sent"] == expected and m["invocations"][-1]["sampling_not_sent"] == expected
    assert m["provider_info"]["sampling_params_sent"] is False
    if warned:
        assert err.count("\n") == 1 and "vscbench: warning: anthropic/claude-x: " + warned in err
    else:
        assert "warning" not in err
