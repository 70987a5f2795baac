"""Time rendering of all 900 metadata-only images (450 typography + 450 FigStep) and report peak memory.

Usage: python benchmarks/render.py [--metadata DIR] [--jobs N] [--keep DIR]
Prints wall time, images per second, and peak resident memory of the parent and of the largest worker.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from vscbench.data import resolve_paths
from vscbench.data.render import default_jobs, render_release

DEFAULT_METADATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vscbench"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metadata", default=str(DEFAULT_METADATA), help="folder with the two metadata .xlsx")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPUs available)")
    ap.add_argument("--keep", help="render into this folder and keep it (default: a temporary folder)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.keep) if a.keep else Path(tmp)
        paths = resolve_paths(out, a.metadata)
        t0 = time.perf_counter()
        s = render_release(paths, force=True, workers=a.jobs, settings=("typography", "figstep"))
        wall = time.perf_counter() - t0
    n = sum(s.written.values())
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    jobs = a.jobs or default_jobs()
    print(f"rendered {n} images ({s.written}) with {jobs} worker(s) in {wall:.2f} s ({n / wall:.1f} images/s)")
    print(f"peak RSS: parent {self_mb:.0f} MiB, largest worker {child_mb:.0f} MiB")
    print(f"target: 900 images under 30 s -> {'met' if n == 900 and wall < 30 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
