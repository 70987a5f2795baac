"""What does the pytest safety suite cost over the engine? Prints wall times side by side, the ratio, and the cached re-run.

A loopback OpenAI-compatible server (``tests/loopback.py``, its own process) answers every request after
exactly L seconds (default 2). Everything runs as a child process from the repository root, each wall
clock from spawn to exit (interpreter start, imports, loading the items, writing the store included):

1. ``engine``: ``vscbench run --setting text`` on the 450 text-only items, concurrency C (default 128);
2. ``suite``: ``python -m pytest -m baseline --judge=keyword --vsc-concurrency C`` on the same 450 items
   (it also judges the responses and runs the gate; the engine run does neither), and the same with
   ``-p no:hypothesispytest`` as a diagnostic (that plugin imports all of hypothesis at the session's end);
   1 and 2 run ``--repeat`` times (default 3, order rotated, a fresh store each time): medians are shown;
3. ``suite, all cases``: one suite run with no ``-m`` over all 4,050 cases sends every case that can be
   sent here (the rest are skipped as never sendable) and fills a fresh store; then the same command again,
   now answered and labelled entirely from the store: the re-run that is timed.

Targets: suite/engine ≤ 1.2 at L = 2 s and C = 128; the cached re-run of all 4,050 cases under 60 s on two
cores. Every suite run uses a thresholds file written here (``benchmark`` and ``setting=text`` scopes,
``max_under_safety: 1.0``, and ``quick: [setting=text]`` so the narrowed ``-m baseline`` runs are an
accepted quick check) so the gate runs and should pass (exit code 0), ``-p no:cacheprovider`` (the
repository's ``.pytest_cache`` is never touched), a temporary release root (rendered images go there) and
a small timestamping plugin of this script's own (``-p vso_phases``) that splits each run into phases.
The machine is shared: the load average is printed, and CPU seconds are steadier than wall seconds.

    python benchmarks/suite_overhead.py                  # everything (~4 minutes on 2 cores)
    python benchmarks/suite_overhead.py --skip-full --repeat 1   # one engine/suite pair (~1 minute)
    python benchmarks/suite_overhead.py --profile DIR    # also profile untimed suite runs (py-spy if on PATH
                                                         # or --py-spy, else cProfile): what dominates
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pstats
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import _served, _server  # noqa: E402  (one loopback launcher for both benchmarks)

SHARED = Path(os.environ.get("VSCBENCH_SHARED", REPO.parent / "shared")).resolve()
METADATA = SHARED / "data" / "vscbench"
MODEL = "openai-compatible/bench"
BASELINE_ITEMS = 450
ALL_CASES = 4050
THRESHOLDS = """\
# written by benchmarks/suite_overhead.py: a gate that runs and passes on any answers
version: 1
defaults: {estimate: point, min_coverage: 0.0, min_n: 1}
scopes:
  benchmark:    {max_under_safety: 1.0}
  setting=text: {max_under_safety: 1.0}
quick: [setting=text]  # the -m baseline runs are a quick check (QUICK PASS, exit 0); the full runs a PASS
"""


SUMMARY_WORDS = r"(\d+) (passed|failed|skipped|deselected|errors?|under-safe|over-safe|unscored)\b"


#: A pytest plugin (``-p vso_phases``) that timestamps the phases of a suite session; written to the temp
#: dir at run time. A handful of hook calls per case: microseconds, nothing measurable.
PHASES_PLUGIN = """\
import json, os, time

import pytest

T = {"loaded": time.time()}


def pytest_configure(config):
    T["configured"] = time.time()


pytest_configure = pytest.hookimpl(trylast=True)(pytest_configure)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection(session):
    T["collection_start"] = time.time()
    try:
        return (yield)
    finally:
        T["collection_end"] = time.time()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session):
    T["loop_start"] = time.time()
    try:
        return (yield)
    finally:
        T["loop_end"] = time.time()


def pytest_runtest_logstart(nodeid, location):
    T.setdefault("first_case", time.time())


def pytest_runtest_logfinish(nodeid, location):
    T["last_case"] = time.time()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    T["unconfigured"] = time.time()
    with open(os.environ["VSO_PHASES_OUT"], "w") as fh:
        json.dump(T, fh)
"""
#: (label, from, to) over the plugin's timestamps; "spawn" and "exit" are the parent's clock.
PHASES = (
    ("start: interpreter, pytest import", "spawn", "loaded"),
    ("configure: conftest, plugin, model setup", "loaded", "configured"),
    ("collection: items, params, selection", "collection_start", "collection_end"),
    ("answer ahead: engine generate + judge", "loop_start", "first_case"),
    ("cases: run and report every case", "first_case", "last_case"),
    ("gate: gather, decide", "last_case", "loop_end"),
    ("terminal summary, unconfigure", "loop_end", "unconfigured"),
    ("interpreter exit", "unconfigured", "exit"),
)


@dataclass
class Child:
    """One timed child process."""

    name: str
    cmd: list[str]
    wall: float = 0.0
    cpu: float = 0.0
    rc: int = -1
    served: int = 0
    out: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    engine_exec: float | None = None


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    (tmp / "vso_phases.py").write_text(PHASES_PLUGIN, encoding="utf-8")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp), env.get("PYTHONPATH")) if p)
    env["VSO_PHASES_OUT"] = str(tmp / "phases.json")
    env["VSCBENCH_HOME"] = str(tmp / "release")  # nothing rendered or cached outside the temp dir
    env.pop("VSCBENCH_STORE", None)
    env.pop("GITHUB_STEP_SUMMARY", None)
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def _timed(child: Child, url: str, env: dict[str, str]) -> Child:
    phases_out = Path(env["VSO_PHASES_OUT"])
    phases_out.unlink(missing_ok=True)
    before, cpu0 = _served(url), _children_cpu()
    spawn = time.time()
    t0 = time.perf_counter()
    out = subprocess.run(child.cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    child.wall = time.perf_counter() - t0
    if phases_out.is_file():
        child.phases = json.loads(phases_out.read_text()) | {"spawn": spawn, "exit": spawn + child.wall}
    child.cpu = _children_cpu() - cpu0
    child.rc = out.returncode
    child.served = _served(url) - before
    child.out = out.stdout + out.stderr
    if "vscbench.cli" in child.cmd and child.rc == 0:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            child.engine_exec = float(json.loads(out.stdout)["stats"]["wall_s"])
    finals = re.findall(r"^.*\bin [\d.]+s\b.*$", child.out, re.M)  # pytest's last line: "N passed, ... in Ts"
    for n, word in re.findall(SUMMARY_WORDS, finals[-1] if finals else ""):
        child.counts[word] = child.counts.get(word, 0) + int(n)
    return child


def _engine_cmd(url: str, store: Path, root: Path, c: int) -> list[str]:
    return [
        sys.executable, "-m", "vscbench.cli", "run", "-m", MODEL, "--base-url", url + "/v1",
        "--root", str(root), "--metadata", str(METADATA), "--store", str(store),
        "--setting", "text", "--concurrency", str(c), "--no-progress", "--json",
    ]  # fmt: skip


def _suite_cmd(
    url: str, store: Path, root: Path, thresholds: Path, c: int, judge: str, marker: str | None
) -> list[str]:
    cmd = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "vso_phases",
        f"--model={MODEL}", f"--vsc-base-url={url}/v1", f"--judge={judge}",
        f"--vsc-metadata={METADATA}", f"--vsc-data-root={root}", f"--vsc-store={store}",
        f"--vsc-thresholds={thresholds}", f"--vsc-concurrency={c}",
    ]  # fmt: skip
    return cmd + (["-m", marker] if marker else [])


def _check(child: Child, want_served: int | None, failures: list[str]) -> None:
    if child.rc != 0:
        failures.append(f"{child.name}: exit code {child.rc}\n{child.out[-3000:]}")
    if want_served is not None and child.served != want_served:
        failures.append(f"{child.name}: the server saw {child.served} requests, expected {want_served}")


def _gate_line(child: Child) -> str:
    m = re.search(r"^gate (PASS|FAIL|INCOMPLETE|PARTIAL|QUICK PASS)\b", child.out, re.M)
    return m.group(1) if m else "?"


def _where(path: str) -> str:
    p = Path(path)
    for base in (REPO / "src", REPO, Path(sys.prefix) / "lib"):
        if p.is_relative_to(base):
            return str(p.relative_to(base))
    return path


def _top_cprofile(profile: Path, n: int) -> None:
    """What dominates a cProfile: own time (tottime) and cumulative time (CPU of the main thread)."""
    stats = pstats.Stats(str(profile))
    rows = stats.stats  # type: ignore[attr-defined]
    for col, idx in (("tottime", 2), ("cumtime", 3)):
        print(f"\n  {profile.name}: top {n} by {col} (s)")
        print(f"  {'calls':>9} {'tottime':>8} {'cumtime':>8}  function")
        for (path, line, func), (_cc, nc, tt, ct, _callers) in sorted(
            rows.items(), key=lambda kv: -kv[1][idx]
        )[:n]:
            print(f"  {nc:>9} {tt:>8.2f} {ct:>8.2f}  {_where(path)}:{line}:{func}")


def _top_pyspy(raw: Path, rate: int, n: int) -> None:
    """What dominates a py-spy ``--idle --threads -f raw`` record of the main thread, in wall seconds:
    inclusive time of the project's functions (vscbench, vsc_fixtures), own time, and time in imports."""
    incl: dict[str, int] = {}
    own: dict[str, int] = {}
    imports: dict[str, int] = {}
    total = 0
    main_ids: set[str] = set()
    lines = raw.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in lines:
        if ": MainThread" in line.split(";", 1)[0]:
            main_ids.add(line.split(";", 1)[0].split(":")[0])
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or frames[0].split(":")[0] not in main_ids:
            continue
        c = int(count)
        total += c
        for f in dict.fromkeys(frames[1:]):
            incl[f] = incl.get(f, 0) + c
        for k, f in enumerate(frames[1:], 1):  # the outermost import on the stack: what, and who asked
            if f.startswith("_find_and_load ("):
                mod = next((g for g in frames[k:] if g.startswith("<module> (")), "<module> (?:0)")
                key = f"{mod[len('<module> (') :].split(':')[0]}  <- {frames[k - 1]}"
                imports[key] = imports.get(key, 0) + c
                break
        leaf = frames[-1] if len(frames) > 1 else "(idle)"
        own[leaf] = own.get(leaf, 0) + c

    def show(title: str, table: dict[str, int], keep: Callable[[str], bool]) -> None:
        print(f"\n  {raw.name}: {title} (main thread, wall s of {total / rate:.1f} s sampled)")
        for f, c in sorted(((f, c) for f, c in table.items() if keep(f)), key=lambda fc: -fc[1])[:n]:
            print(f"  {c / rate:>7.2f}  {f}")

    ours = ("vscbench/", "vsc_fixtures/")
    show("inclusive, project functions", incl, lambda f: any(o in f for o in ours))
    show("own time (leaf frames)", own, lambda f: True)
    show("imports, outermost (module <- the frame that imported it)", imports, lambda f: True)


def _profile(
    cmd: list[str], name: str, out_dir: Path, env: dict[str, str], py_spy: str | None, n: int
) -> None:
    """Run ``cmd`` (a suite command, untimed) under py-spy (wall clock, every thread) or cProfile."""
    if py_spy:
        raw, rate = out_dir / f"{name}.pyspy.txt", 100
        full = [
            py_spy,
            "record",
            "--idle",
            "--threads",
            "-r",
            str(rate),
            "-f",
            "raw",
            "-o",
            str(raw),
            "--",
            *cmd,
        ]
        subprocess.run(full, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        _top_pyspy(raw, rate, n)
    else:
        prof = out_dir / f"{name}.prof"
        full = [cmd[0], "-m", "cProfile", "-o", str(prof), *cmd[1:]]
        subprocess.run(full, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        _top_cprofile(prof, n)


def _phase_table(columns: Sequence[tuple[str, Sequence[Child]]]) -> None:
    cols = [(name, [c for c in runs if c.phases]) for name, runs in columns]
    cols = [(name, runs) for name, runs in cols if runs]
    if not cols:
        return
    print("\nwhere a suite run's wall time goes (s, median over the repeats; timestamps of a `-p` plugin):\n")
    print("| phase | " + " | ".join(name for name, _ in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for label, a, b in PHASES:
        cells = []
        for _, runs in cols:
            got = [c.phases[b] - c.phases[a] for c in runs if a in c.phases and b in c.phases]
            cells.append(f"{statistics.median(got):.1f}" if got else "-")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| **total** | " + " | ".join(f"**{_med(runs):.1f}**" for _, runs in cols) + " |")


def _med(runs: Sequence[Child]) -> float:
    return statistics.median(c.wall for c in runs)


def _wall_cell(runs: Sequence[Child]) -> str:
    if len(runs) == 1:
        return f"{runs[0].wall:.1f}"
    return f"{_med(runs):.1f} ({min(c.wall for c in runs):.1f}–{max(c.wall for c in runs):.1f})"


def _rc_cell(runs: Sequence[Child]) -> str:
    rcs = sorted({c.rc for c in runs})
    gates = sorted({_gate_line(c) for c in runs if "pytest" in c.cmd})
    return ",".join(map(str, rcs)) + (f" (gate {', '.join(gates)})" if gates else "")


def run_benchmark(
    latency: float,
    c: int,
    repeat: int,
    full: bool,
    full_judge: str,
    profile_dir: Path | None,
    py_spy: str | None,
    top: int,
) -> int:
    failures: list[str] = []
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vsc-suite-overhead-") as tmpdir:
        tmp = Path(tmpdir)
        root = tmp / "release"
        root.mkdir()
        thresholds = tmp / "thresholds.yaml"
        thresholds.write_text(THRESHOLDS, encoding="utf-8")
        env = _env(tmp)
        server, url = _server(latency)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(
            f"# vscbench suite overhead: loopback latency {latency:g} s, concurrency {c}, {repeat} repeat(s); "
            f"{cores} cores usable ({os.cpu_count()} CPUs), Python {sys.version.split()[0]}, "
            f"load average {load0[0]:.1f} at start"
        )

        # 1-2: engine vs suite on the 450 text-only items, each run with a fresh store; the order alternates
        def commands(store: Path) -> dict[str, list[str]]:
            base = _suite_cmd(url, store, root, thresholds, c, "keyword", "baseline")
            return {
                "engine": _engine_cmd(url, store, root, c),
                "suite": base,
                "suite_nohyp": [*base, "-p", "no:hypothesispytest"],
            }

        runs: dict[str, list[Child]] = {k: [] for k in commands(tmp)}
        full_runs: dict[str, Child] = {}
        profiles = io.StringIO()
        try:
            for r in range(repeat):
                order = list(runs)
                order = order[r % len(order) :] + order[: r % len(order)]
                for kind in order:
                    ch = _timed(Child(kind, commands(tmp / f"{kind}-{r}.sqlite")[kind]), url, env)
                    _check(ch, BASELINE_ITEMS, failures)
                    if kind != "engine" and _n_ran(ch) != BASELINE_ITEMS:
                        failures.append(
                            f"{kind} -m baseline: {ch.counts} (expected {BASELINE_ITEMS} cases run)"
                        )
                    runs[kind].append(ch)

            if full:
                # 3: every case: pre-fill (sends what is sendable here), then the fully cached re-run
                full_cmd = _suite_cmd(url, tmp / "full.sqlite", root, thresholds, c, full_judge, None)
                pre = _timed(Child("suite all, prefill", full_cmd), url, env)
                _check(pre, None, failures)
                again = _timed(Child("suite all, cached", full_cmd), url, env)
                _check(again, 0, failures)
                if _n_ran(again) + again.counts.get("skipped", 0) != ALL_CASES:
                    failures.append(f"suite all, cached: {again.counts} (expected {ALL_CASES} cases)")
                full_runs = {"prefill": pre, "cached": again}

            if profile_dir is not None:  # untimed extra runs: a fresh baseline store, the cached full store
                with contextlib.redirect_stdout(profiles):
                    print(
                        f"\nprofiles ({'py-spy, wall clock' if py_spy else 'cProfile, CPU'}) in {profile_dir}:"
                    )
                    base = commands(tmp / "prof.sqlite")["suite"]
                    _profile(base, "suite_baseline", profile_dir, env, py_spy, top)
                    if full:
                        _profile(full_cmd, "suite_all_cached", profile_dir, env, py_spy, top)
        finally:
            server.terminate()
            server.wait(10)

        eng, suite, nohyp = runs["engine"], runs["suite"], runs["suite_nohyp"]
        ideal = -(-BASELINE_ITEMS // c) * latency
        execs = [ch.engine_exec for ch in eng if ch.engine_exec is not None]
        wall_head = "wall s" + (" median (min–max)" if repeat > 1 else "")
        print(f"\n| run | cases ran / skipped | requests sent | {wall_head} | CPU s | exit code |")
        print("|---|---:|---:|---:|---:|---|")

        def row(label: str, rs: Sequence[Child], ran: str, extra: str = "") -> None:
            cpu = statistics.median(ch.cpu for ch in rs)
            sent = "/".join(sorted({str(ch.served) for ch in rs}))
            print(f"| {label} | {ran} | {sent} | {_wall_cell(rs)}{extra} | {cpu:.1f} | {_rc_cell(rs)} |")

        note = f"; execute {statistics.median(execs):.1f}" if execs else ""
        row("`vscbench run --setting text`", eng, f"{BASELINE_ITEMS} / 0", note)
        row("suite `-m baseline`, judge keyword", suite, _ran(suite[0]))
        row("same, `-p no:hypothesispytest` (diagnostic)", nohyp, _ran(nohyp[0]))
        if full:
            pre, again = full_runs["prefill"], full_runs["cached"]
            row(f"suite, all {ALL_CASES} cases, prefill (fresh store), judge {full_judge}", [pre], _ran(pre))
            row(f"suite, all {ALL_CASES} cases, **cached re-run**, judge {full_judge}", [again], _ran(again))

        ratio = _med(suite) / _med(eng)
        print(f"\nideal ceil({BASELINE_ITEMS}/{c})·{latency:g} s = {ideal:.1f} s")
        pairs = ", ".join(f"{s.wall / e.wall:.2f}" for s, e in zip(suite, eng, strict=True))
        print(
            f"suite / engine = {_med(suite):.1f} / {_med(eng):.1f} = **{ratio:.2f}x** (target ≤ 1.20: "
            f"{'ok' if ratio <= 1.2 else 'MISSED'})" + (f"; per repeat {pairs}" if repeat > 1 else "")
        )
        print(
            f"  without the hypothesis plugin: {_med(nohyp):.1f} / {_med(eng):.1f} = {_med(nohyp) / _med(eng):.2f}x"
        )
        if full:
            again = full_runs["cached"]
            judge_note = "" if full_judge == "local" else f" (judge {full_judge}, not local)"
            print(
                f"cached re-run of all {ALL_CASES} cases: **{again.wall:.1f} s** on {cores} cores "
                f"(target < 60 s: {'ok' if again.wall < 60 else 'MISSED'}){judge_note}; "
                f"{_n_ran(again)} ran, {again.counts.get('skipped', 0)} skipped as never sendable here "
                f"(no release images: image half and searched/concat images), {again.served} requests sent"
            )
            m = re.search(r"^cases: .*$", again.out, re.M)
            if m:
                print(f"  the plugin's line: {m.group(0)}")
        cols: list[tuple[str, Sequence[Child]]] = [
            ("suite -m baseline", suite),
            ("same, no hypothesis", nohyp),
        ]
        cols += [(f"all, {k}", [v]) for k, v in full_runs.items()]
        _phase_table(cols)
        print(
            f"\nload average at the end {os.getloadavg()[0]:.1f} (at the start {load0[0]:.1f}; 2 = both cores busy)"
        )
        print(
            "\ncommands (URL: the loopback server; STORE: a fresh temp store; ROOT: a temp release root; "
            "META: the shared metadata; T: the thresholds file written here):"
        )
        print("  " + _shown(eng[0].cmd, url, tmp))
        print("  " + _shown(suite[0].cmd, url, tmp))
        if full:
            print(
                "  "
                + _shown(full_runs["cached"].cmd, url, tmp)
                + "   # twice: prefill, then the timed re-run"
            )
        print(profiles.getvalue(), end="")
    for f in failures:
        print("PROBLEM: " + f)
    return 1 if failures else 0


#: pytest's summary words for a case that ran (the plugin reports under-/over-safe and unscored apart)
RAN = ("passed", "failed", "under-safe", "over-safe", "unscored", "error", "errors")


def _n_ran(child: Child) -> int:
    return sum(child.counts.get(k, 0) for k in RAN)


def _ran(child: Child) -> str:
    return f"{_n_ran(child)} / {child.counts.get('skipped', 0)}"


def _shown(cmd: Sequence[str], url: str, tmp: Path) -> str:
    args = [a for a in cmd[1:] if a not in ("--json",)]
    if "vso_phases" in args:  # the phase timer is this script's own
        i = args.index("vso_phases")
        del args[i - 1 : i + 1]
    text = " ".join(["python", *args])
    for s, r in ((f"{url}", "URL"), (str(tmp / "release"), "ROOT"), (str(tmp / "thresholds.yaml"), "T"),
                 (str(METADATA), "META")):  # fmt: skip
        text = text.replace(s, r)
    return re.sub(re.escape(str(tmp)) + r"/\S+\.sqlite", "STORE", text)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--latency", type=float, default=2.0, help="seconds the loopback waits (default 2)")
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3, help="engine/suite pairs, medians shown (default 3)")
    ap.add_argument("--skip-full", action="store_true", help="skip the all-cases prefill and cached re-run")
    ap.add_argument("--full-judge", default="local", choices=["local", "keyword"],
                    help="judge of the all-cases runs (default local)")  # fmt: skip
    ap.add_argument("--profile", type=Path, metavar="DIR", help="profile extra, untimed suite runs into DIR")
    ap.add_argument("--py-spy", help="py-spy executable for --profile (default: on PATH; else cProfile)")
    ap.add_argument("--top", type=int, default=15, help="functions shown per profile")
    a = ap.parse_args(argv)
    if a.profile:
        a.profile.mkdir(parents=True, exist_ok=True)
    py_spy = a.py_spy or shutil.which("py-spy")
    return run_benchmark(
        a.latency, a.concurrency, a.repeat, not a.skip_full, a.full_judge, a.profile, py_spy, a.top
    )


if __name__ == "__main__":
    raise SystemExit(main())
