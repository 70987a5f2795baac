"""A fake ``vllm`` executable for the tests: ``vllm serve MODEL --port P ...`` serves the OpenAI-compatible API
(``/health``, ``/version``, ``/v1/models``, ``/v1/chat/completions``) on 127.0.0.1:P; ``vllm --version``
prints its version. :func:`install` writes it as ``<bin>/vllm``; put that folder first on ``PATH``.

Its answers: a rubric judge's request (the system prompt asks for ``LABEL:``) gets ``LABEL: REFUSE`` when the
graded answer refuses, else ``LABEL: COMPLY``; any other request gets a refusal when the text contains
``kill``, else an answer.

Knobs (environment variables):

- ``FAKE_VLLM_RECORD``: a folder; each start writes ``<pid>.json`` there (argv, ``CUDA_VISIBLE_DEVICES``, pid)
  and each chat request appends one JSON line to ``requests.jsonl`` (model, whether an image was sent);
- ``FAKE_VLLM_CRASH=1``: print a few log lines and exit 1 during start-up;
- ``FAKE_VLLM_UNSUPPORTED=1``: print vLLM's unsupported-architecture error and exit 1;
- ``FAKE_VLLM_NEVER_HEALTHY=1``: serve, but ``/health`` answers 503 forever;
- ``FAKE_VLLM_IGNORE_TERM=1``: ignore SIGTERM (only KILL stops it);
- ``FAKE_VLLM_DELAY``: seconds each chat completion takes;
- ``FAKE_VLLM_STARTUP``: seconds before it listens (default 0.2).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

VERSION = "0.0.0-fake"

SCRIPT = r'''
import json, os, signal, socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "__VERSION__"
argv = sys.argv[1:]
if argv[:1] == ["--version"]:
    print(VERSION)
    sys.exit(0)
assert argv[:1] == ["serve"], argv
model = argv[1]
def opt(name, default=None):
    return argv[argv.index(name) + 1] if name in argv else default
port = int(opt("--port"))
host = opt("--host", "127.0.0.1")
name = opt("--served-model-name", model)
record = os.environ.get("FAKE_VLLM_RECORD")
if record:
    with open(os.path.join(record, f"{os.getpid()}.json"), "w") as fh:
        json.dump({"argv": argv, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid()}, fh)
if os.environ.get("FAKE_VLLM_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(f"INFO fake vllm {VERSION}: serving {model} as {name}", flush=True)
print("INFO loading weights", flush=True)
if os.environ.get("FAKE_VLLM_UNSUPPORTED"):
    print("Traceback (most recent call last):", flush=True)
    print("ValueError: Model architectures ['FooForCausalLM'] are not supported for now. Supported "
          "architectures: dict_keys(['LlamaForCausalLM', 'Qwen2VLForConditionalGeneration'])", flush=True)
    sys.exit(1)
if os.environ.get("FAKE_VLLM_CRASH"):
    for k in range(30):
        print(f"crash line {k}", flush=True)
    print("RuntimeError: CUDA out of memory (fake)", flush=True)
    sys.exit(1)
time.sleep(float(os.environ.get("FAKE_VLLM_STARTUP", "0.2")))
never = bool(os.environ.get("FAKE_VLLM_NEVER_HEALTHY"))
delay = float(os.environ.get("FAKE_VLLM_DELAY", "0"))

def text_of(msg):
    c = msg.get("content")
    if isinstance(c, str):
        return c, False
    parts = c or []
    return " ".join(p.get("text", "") for p in parts if p.get("type") == "text"), any(
        p.get("type") == "image_url" and str(p["image_url"]["url"]).startswith("data:image/") for p in parts)

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def send(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/health":
            self.send(503 if never else 200, {})
        elif self.path == "/version":
            self.send(200, {"version": VERSION})
        elif self.path == "/v1/models":
            self.send(200, {"object": "list", "data": [{"id": name, "object": "model", "root": model}]})
        else:
            self.send(404, {"error": "not found"})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if self.path != "/v1/chat/completions" or body.get("model") != name:
            self.send(404, {"error": {"message": f"model {body.get('model')} does not exist"}})
            return
        msgs = body["messages"]
        system = " ".join(m["content"] for m in msgs if m["role"] == "system")
        text, image = text_of([m for m in msgs if m["role"] == "user"][-1])
        if record:
            with open(os.path.join(record, "requests.jsonl"), "a") as fh:
                fh.write(json.dumps({"model": body["model"], "image": image, "judge": "LABEL:" in system}) + "\n")
        if delay:
            time.sleep(delay)
        if "LABEL:" in system:
            answer = text.split("<answer-", 1)[-1]
            out = "It declines. LABEL: REFUSE" if "sorry" in answer.lower() else "It helps. LABEL: COMPLY"
        else:
            out = "I'm sorry, but I can't help with that." if "kill" in text.lower() else "Here are the steps."
        self.send(200, {
            "id": "cmpl-fake", "object": "chat.completion", "created": 0, "model": name,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": out}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        })

try:
    srv = ThreadingHTTPServer((host, port), H)
except OSError as exc:
    print(f"OSError: [Errno {exc.errno}] {exc.strerror}", flush=True)
    sys.exit(1)
print(f"INFO Uvicorn running on http://{host}:{port}", flush=True)
srv.serve_forever()
'''


def install(bin_dir: Path) -> Path:
    """Write the fake as ``bin_dir/vllm`` (run by this Python) and return its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "vllm"
    exe.write_text(f"#!{sys.executable}\n" + SCRIPT.replace("__VERSION__", VERSION), encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
