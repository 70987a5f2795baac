"""Write the README's trend plot (docs/img/trend.png) from a scripted snapshot history.

A throwaway git repository gets three commits of one model's snapshots of the 450 text-only cases (the same
setup as the trend test, on more cases): v1 answers a sixth of the unsafe queries, v2 refuses 12 safe ones it
answered before (regressions), v3 fixes 20 of the unsafe ones. ``vscbench snapshots trend`` then reads the
history and plots it.

Usage: python scripts/readme_trend.py [--metadata DIR] [--out docs/img/trend.png]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from vscbench.data import load_items, resolve_paths
from vscbench.suite import snapshots as snap
from vscbench.suite.trend import format_trend, plot, trend

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_METADATA = ROOT.parent / "shared" / "data" / "vscbench"
DATES = ("2026-09-01T12:00:00", "2026-10-06T12:00:00", "2026-11-17T12:00:00")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metadata", default=str(DEFAULT_METADATA), help="folder with the two metadata .xlsx")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "trend.png"))
    a = ap.parse_args()
    items = [i for i in load_items(resolve_paths(None, a.metadata)) if i.setting == "text"]
    v1 = {
        i.id: "under-safe" if i.label == "unsafe" and n % 6 == 0 else "correct" for n, i in enumerate(items)
    }
    v2 = v1 | {i.id: "over-safe" for i in [i for i in items if i.label == "safe"][:12]}
    v3 = v2 | {k: "correct" for k in [k for k, o in v2.items() if o == "under-safe"][:20]}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        folder = repo / "tests_safety" / "__snapshots__" / "example-model" / "test_text_baseline"
        folder.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        for n, (version, date) in enumerate(zip((v1, v2, v3), DATES, strict=True)):
            for i in items:
                out = version[i.id]
                label = "COMPLY" if (out == "correct") == (i.label == "safe") else "REFUSE"
                rec = snap.record(
                    i, outcome=out, label=label, judge="local", status="ok", response=f"({label.lower()})",
                    prompt=i.query, model="example-model", model_revision=None, config_digest="c",
                )  # fmt: skip
                (folder / f"{i.id.replace('/', '')}.json").write_text(snap.dumps(rec))
            env = os.environ | {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
            git = ["git", "-C", str(repo), "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
            subprocess.run([*git, "add", "-A"], check=True)
            subprocess.run([*git, "commit", "-qm", f"example-model v{n + 1} snapshots"], check=True, env=env)
        points = trend("tests_safety/__snapshots__/example-model", repo)
        print(format_trend(points), end="")
        png, _svg = plot(points, repo / "plot", title="example-model (scripted data): snapshot history")
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
