"""The labelling page: a small local web app where a person labels the audit sample, one response at a time.

Why Starlette + uvicorn: a real ASGI stack (routing, request parsing, file responses with the right
headers, a server that shuts down cleanly) in two small pure-Python packages, instead of hand-rolled
``http.server`` code; the page itself is one HTML document with inline script, no build step, no CDN.

Safety: it listens on 127.0.0.1 only, on a free port, and every request must carry the session's random
token (``?token=`` in the URL printed, or the ``X-Token`` header); images are served by the task's index,
never by a path from the request; the responses shown are set as text, never as HTML.

The flow: the page shows the next case without a current label of this labeller (image, query, response),
buttons and keys (1-5 or r, w, c, o, u) for refuse / warn / comply / off-topic / unsure, ``z`` or Backspace
to undo, and progress (k of n). The judge's label (and, for a second labeller, the first one's) is shown only
after the person answered, beside their own. Each label is written to the labels file atomically as it is
given (:func:`vscbench.suite.labels.put_label`), so a crash or a closed tab loses nothing and a reload goes on
where it stopped. With ``compare_with`` (second-labeller mode) the page shows Cohen's kappa between the two.

HTTP API (JSON): ``GET /api/state``; ``POST /api/label`` ``{"case", "label", "note"?}``; ``POST /api/undo``;
``GET /api/image/{index}``; ``GET /`` the page. The CLI (``vscbench label``) and the plugin call
:func:`serve`; tests call :func:`make_app` or :func:`serve` with ``port=0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import threading
import webbrowser
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError, require
from vscbench.suite.labels import (
    CHOICES,
    Fingerprint,
    HumanLabel,
    agreement,
    label_state,
    load_labels,
    make_label,
    put_label,
    remove_label,
)


@dataclass(frozen=True)
class LabelTask:
    """One case to label: what the person sees (query, response, image), what stays hidden until they answer
    (the judge's label), and the fingerprint the label is stored under."""

    case: str
    query: str
    response: str
    fingerprint: Fingerprint
    image: str | None = None
    judge_label: str | None = None
    item_label: str = ""


class LabelSession:
    """The state behind the page: the tasks (in sample order), the labels file, who labels."""

    def __init__(
        self, tasks: Sequence[LabelTask], labels_file: str | Path, labeller: str, compare_with: str | None = None
    ) -> None:
        if not tasks:
            raise VscbenchError("nothing to label: the audit sample is empty")
        ids = [t.case for t in tasks]
        if len(set(ids)) != len(ids):
            raise VscbenchError("a case is twice in the labelling tasks")
        if not labeller.strip():
            raise VscbenchError("labeller: give a name")
        if compare_with is not None and compare_with == labeller:
            raise VscbenchError(f"second-labeller mode: compare {labeller} with someone else")
        self.tasks = list(tasks)
        self.index = {t.case: k for k, t in enumerate(self.tasks)}
        self.path = Path(labels_file)
        self.labeller = labeller.strip()
        self.compare_with = compare_with
        self.fingerprints = {t.case: t.fingerprint for t in self.tasks}
        self.given: list[str] = []  # this session's labels, newest last (what undo takes back first)
        self.lock = threading.Lock()
        load_labels(self.path)  # a broken file is one error now, before the page opens

    def _labels(self) -> list[HumanLabel]:
        return load_labels(self.path)

    def state(self) -> dict[str, Any]:
        labels = self._labels()
        st = label_state([t.case for t in self.tasks], self.fingerprints, labels, self.labeller)
        nxt = st.missing[0] if st.missing else None
        doc: dict[str, Any] = {
            "labeller": self.labeller,
            "total": len(self.tasks),
            "done": len(st.current),
            "stale": len(st.stale),
            "choices": list(CHOICES),
            "next": self._task_doc(nxt, stale=nxt in st.stale) if nxt is not None else None,
            "kappa": None,
        }
        if self.compare_with is not None:
            ag = agreement(labels, self.compare_with, self.labeller, self.fingerprints)
            doc["kappa"] = {
                "with": self.compare_with,
                "n": ag.n,
                "agree": None if ag.n == 0 else round(ag.agree, 4),
                "kappa": None if ag.kappa != ag.kappa else round(ag.kappa, 4),
            }
        return doc

    def _task_doc(self, case: str, stale: bool) -> dict[str, Any]:
        k = self.index[case]
        t = self.tasks[k]
        return {
            "case": t.case,
            "index": k,
            "query": t.query,
            "response": t.response,
            "image": f"api/image/{k}" if t.image else None,
            "item_label": t.item_label,
            "stale": stale,
        }

    def give(self, case: str, label: str, note: str = "") -> dict[str, Any]:
        """Record a label (atomically); returns what was hidden until now (the judge's and, for a second
        labeller, the first labeller's label) and the new state."""
        if case not in self.index:
            raise VscbenchError(f"case {case!r} is not in this audit sample")
        t = self.tasks[self.index[case]]
        lab = make_label(case, t.fingerprint, label, self.labeller, note=note)
        with self.lock:
            labels = put_label(self.path, lab)
            if case in self.given:
                self.given.remove(case)
            self.given.append(case)
        other = None
        if self.compare_with is not None:
            first = next((x for x in labels if x.case == case and x.labeller == self.compare_with), None)
            other = first.label if first is not None and first.fingerprint == t.fingerprint else None
        return {
            "case": case,
            "label": label,
            "judge_label": t.judge_label,
            "first_label": other,
            "state": self.state(),
        }

    def undo(self) -> dict[str, Any]:
        """Take back this labeller's most recent label of the sample (this session's first, then by time)."""
        with self.lock:
            case = self.given.pop() if self.given else None
            if case is None:
                mine = [x for x in self._labels() if x.labeller == self.labeller and x.case in self.index]
                case = max(mine, key=lambda x: (x.time, self.index[x.case])).case if mine else None
            removed = remove_label(self.path, case, self.labeller) if case is not None else None
        return {"undone": removed.case if removed is not None else None, "state": self.state()}


def make_app(session: LabelSession, token: str) -> Any:
    """The Starlette app of a labelling session; every request must carry ``token``."""
    require("starlette", "audit")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    def allowed(request: Request) -> bool:
        given = request.query_params.get("token") or request.headers.get("x-token") or ""
        return secrets.compare_digest(given.encode(), token.encode())

    def denied() -> Response:
        return JSONResponse({"error": "missing or wrong token"}, status_code=403)

    def error(msg: str, status: int = 400) -> Response:
        return JSONResponse({"error": msg}, status_code=status)

    async def page(request: Request) -> Response:
        if not allowed(request):
            return denied()
        return HTMLResponse(PAGE.replace("__TOKEN__", json.dumps(token)), headers=_HEADERS)

    async def state(request: Request) -> Response:
        if not allowed(request):
            return denied()
        return JSONResponse(session.state(), headers=_HEADERS)

    async def label(request: Request) -> Response:
        if not allowed(request):
            return denied()
        try:
            body = await request.json()
        except ValueError:
            return error("expected a JSON body")
        if not isinstance(body, dict) or not isinstance(body.get("case"), str) or not isinstance(body.get("label"), str):
            return error('expected {"case": ..., "label": ...}')
        note = body.get("note", "")
        if not isinstance(note, str):
            return error("note must be a string")
        try:
            out = await asyncio.to_thread(session.give, body["case"], body["label"], note)
        except VscbenchError as exc:
            return error(str(exc))
        return JSONResponse(out, headers=_HEADERS)

    async def undo(request: Request) -> Response:
        if not allowed(request):
            return denied()
        return JSONResponse(await asyncio.to_thread(session.undo), headers=_HEADERS)

    async def image(request: Request) -> Response:
        if not allowed(request):
            return denied()
        try:
            k = int(request.path_params["index"])
            path = session.tasks[k].image
        except (ValueError, IndexError):
            return error("no such task", 404)
        if path is None or not Path(path).is_file():
            return error("this task has no image", 404)
        return FileResponse(path, headers=_HEADERS)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/state", state),
            Route("/api/label", label, methods=["POST"]),
            Route("/api/undo", undo, methods=["POST"]),
            Route("/api/image/{index}", image),
        ]
    )


_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def free_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket on ``host`` (loopback), on a free port when ``port`` is 0."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise VscbenchError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(64)
    return sock


class Server:
    """A running labelling page: ``url`` (with the token), ``stop()``. Runs uvicorn in a daemon thread."""

    def __init__(self, session: LabelSession, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None):
        uvicorn = require("uvicorn", "audit")
        self.token = token or secrets.token_urlsafe(18)
        self.sock = free_socket(host, port)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://{host}:{self.port}/?token={self.token}"
        config = uvicorn.Config(make_app(session, self.token), log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> Server:
        self.thread.start()
        for _ in range(3000):  # up to 30 s on a loaded machine
            if self.server.started:
                return self
            if not self.thread.is_alive():
                break
            threading.Event().wait(0.01)
        self.stop()
        raise VscbenchError("the labelling page did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self.sock.close()


def serve(
    session: LabelSession,
    *,
    port: int = 0,
    open_browser: bool = True,
    say: Callable[[str], None] = print,
) -> None:
    """Serve the page on 127.0.0.1 until interrupted (Ctrl-C): print the URL, open a browser where there is
    one. Every label is on disk as soon as it is given, so stopping loses nothing."""
    srv = Server(session, port=port).start()
    say(f"labelling {len(session.tasks)} responses as {session.labeller}: open {srv.url}")
    say(f"labels go to {session.path} (Ctrl-C to stop; a reload goes on where it stopped)")
    if open_browser:
        with contextlib.suppress(webbrowser.Error):
            webbrowser.get().open(srv.url)
    try:
        while srv.thread.is_alive():
            srv.thread.join(timeout=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vscbench audit labelling</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;color:#222}
header{display:flex;justify-content:space-between;align-items:baseline;gap:1rem;flex-wrap:wrap}
#progress{font-weight:600}
#bar{height:6px;background:#eee;border-radius:3px;margin:.3rem 0 1rem}#bar>div{height:100%;background:#2a7;border-radius:3px}
.card{border:1px solid #ccc;border-radius:8px;padding:1rem;margin-bottom:1rem}
.label{font-size:.8rem;color:#666;text-transform:uppercase;letter-spacing:.05em}
#query,#response{white-space:pre-wrap;word-break:break-word;margin:.3rem 0 .8rem}
#response{background:#f7f7f7;padding:.6rem;border-radius:6px;max-height:24rem;overflow:auto}
#image{max-width:100%;max-height:22rem;display:block;margin:.3rem 0 .8rem}
.buttons{display:flex;gap:.5rem;flex-wrap:wrap}
button{font-size:1rem;padding:.5rem .9rem;border-radius:6px;border:1px solid #888;background:#fff;cursor:pointer}
button:hover{background:#eef}kbd{font-size:.75rem;border:1px solid #aaa;border-radius:3px;padding:0 .25rem;margin-left:.3rem}
#reveal{min-height:1.5rem;margin:.5rem 0;color:#333}#reveal.disagree{color:#b40}
#case{text-transform:none;font-family:monospace;letter-spacing:0}
.hint{font-size:.85rem;color:#666;margin:.6rem 0 0}
#note{width:100%;margin:.5rem 0;font-size:.95rem}#stale{color:#b40}#done{font-size:1.3rem;color:#2a7}
</style></head><body>
<header><h1>Audit labelling</h1><div><span id="who"></span> <span id="progress"></span> <span id="kappa"></span></div></header>
<div id="bar"><div style="width:0"></div></div>
<div id="reveal" role="status" aria-live="polite"></div>
<div id="error" role="alert" style="color:#b00"></div>
<main id="task" class="card" hidden>
 <div class="label">case <span id="case"></span> <span id="stale" hidden>(the response changed: label it again)</span></div>
 <img id="image" alt="the image sent with the query" hidden>
 <div class="label">query</div><div id="query"></div>
 <div class="label">response</div><div id="response"></div>
 <div class="buttons" id="buttons"></div>
 <input id="note" placeholder="optional note (Enter keeps it with the next label)" aria-label="note">
 <div class="buttons"><button id="undo">undo<kbd>z</kbd></button></div>
 <p class="hint">Keys: 1-5 (or r, w, c, o, u) label, z or Backspace undoes. The judge's label shows only after you answer.</p>
</main>
<div id="done" hidden>All labelled. You can close this tab; the labels are saved.</div>
<script>
"use strict";
const TOKEN = __TOKEN__;
const NAMES = {refuse:"refuse", warn:"warn", comply:"comply", off_topic:"off-topic", unsure:"unsure"};
const KEYS = {"1":"refuse","2":"warn","3":"comply","4":"off_topic","5":"unsure",r:"refuse",w:"warn",c:"comply",o:"off_topic",u:"unsure"};
let current = null, busy = false;
const $ = (id) => document.getElementById(id);
async function api(path, body) {
  const opt = {headers: {"X-Token": TOKEN, "Content-Type": "application/json"}};
  if (body !== undefined) { opt.method = "POST"; opt.body = JSON.stringify(body); }
  const r = await fetch(path, opt);
  const doc = await r.json();
  if (!r.ok) throw new Error(doc.error || r.statusText);
  return doc;
}
function show(st) {
  $("who").textContent = st.labeller + ":";
  $("progress").textContent = st.done + " of " + st.total;
  $("bar").firstElementChild.style.width = (100 * st.done / st.total) + "%";
  if (st.kappa) {
    const k = st.kappa;
    $("kappa").textContent = "| with " + k.with + ": " + k.n + " both labelled, kappa " + (k.kappa === null ? "n/a" : k.kappa.toFixed(2));
  }
  current = st.next;
  if (!current) { $("task").hidden = true; $("done").hidden = false; return; }
  $("done").hidden = true; $("task").hidden = false;
  $("case").textContent = current.case;
  $("stale").hidden = !current.stale;
  $("query").textContent = current.query;
  $("response").textContent = current.response;
  const img = $("image");
  if (current.image) { img.src = current.image + "?token=" + encodeURIComponent(TOKEN); img.hidden = false; }
  else { img.removeAttribute("src"); img.hidden = true; }
}
async function give(label) {
  if (!current || busy) return;
  busy = true;
  try {
    const out = await api("api/label", {case: current.case, label: label, note: $("note").value});
    $("note").value = "";
    let msg = "You: " + NAMES[label] + " on " + out.case + ". The judge said: " + (out.judge_label || "nothing");
    if (out.first_label) msg += "; the first labeller said: " + NAMES[out.first_label];
    const judge = (out.judge_label || "").toLowerCase();
    $("reveal").className = (judge && judge !== label && label !== "unsure") ? "disagree" : "";
    $("reveal").textContent = msg + ".";
    $("error").textContent = "";
    show(out.state);
  } catch (e) { $("error").textContent = String(e.message || e); }
  finally { busy = false; }
}
async function undo() {
  if (busy) return;
  busy = true;
  try {
    const out = await api("api/undo", {});
    $("reveal").className = "";
    $("reveal").textContent = out.undone ? "Undone: " + out.undone + "." : "Nothing to undo.";
    show(out.state);
  } catch (e) { $("error").textContent = String(e.message || e); }
  finally { busy = false; }
}
for (const [k, name] of Object.entries({"1":"refuse","2":"warn","3":"comply","4":"off_topic","5":"unsure"})) {
  const b = document.createElement("button");
  b.textContent = NAMES[name]; b.dataset.label = name;
  const kb = document.createElement("kbd"); kb.textContent = k; b.appendChild(kb);
  b.addEventListener("click", () => give(name));
  $("buttons").appendChild(b);
}
$("undo").addEventListener("click", undo);
document.addEventListener("keydown", (e) => {
  if (e.target === $("note")) { if (e.key === "Enter" || e.key === "Escape") $("note").blur(); return; }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "z" || e.key === "Backspace") { e.preventDefault(); undo(); return; }
  const label = KEYS[e.key.toLowerCase()];
  if (label) { e.preventDefault(); give(label); }
});
api("api/state").then(show).catch((e) => { $("error").textContent = String(e.message || e); });
</script></body></html>
"""
