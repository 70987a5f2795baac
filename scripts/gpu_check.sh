#!/usr/bin/env bash
# GPU check (≤ 8 minutes on one GPU, no hub access): the in-process path and, where vLLM installs, the vLLM path.
#
#   bash scripts/gpu_check.sh [N_ITEMS]        # default 128 items (text baseline + typography, whole pairs)
#
# 1. builds the tiny random Qwen2-VL the tests use (tests/qwen2vl_fixtures.py) into a folder;
# 2. runs the safety suite on it in process, `pytest --model=hf/<folder> --vsc-device=cuda`, at batch sizes
#    1, 8 and 32, printing responses/s and whether the batched outputs equal the one-by-one outputs;
# 3. if `pip install vllm` works here, runs the same items through `--model=vllm/<folder>` (a server the suite
#    starts and stops) and prints its responses/s beside the in-process ones.
# The figures are the tiny random model's: they check the code paths and the batching gain, not a real model.
# Run from the repository root with the project's environment active (make setup); needs ../shared/data.
set -uo pipefail
N=${1:-128}
DEVICE=${VSC_DEVICE:-cuda}  # VSC_DEVICE=cpu: a dry run of this script on a machine without a GPU
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
export PYTHONPATH="$REPO/src:$REPO:$REPO/tests${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORK=$(mktemp -d /tmp/vscbench-gpu-check.XXXXXX)
META=${VSCBENCH_METADATA:-$(cd "$REPO/.." && pwd)/shared/data/vscbench}
STORE="$WORK/store.sqlite"
CKPT="$WORK/tiny-qwen2vl"
echo "gpu_check: work folder $WORK, metadata $META, $N items"
nvidia-smi -L || echo "gpu_check: nvidia-smi not found"

timeout 120 python - "$CKPT" <<'EOF' || { echo "gpu_check: FAILED to build the tiny Qwen2-VL"; exit 1; }
import sys
from pathlib import Path
from qwen2vl_fixtures import build_tiny_qwen2vl
print("gpu_check: tiny Qwen2-VL at", build_tiny_qwen2vl(Path(sys.argv[1]), seed=0))
EOF

# one suite session: prints "<label> <run id> <seconds>" on the last line of $WORK/<label>.time
session() {  # label, then extra pytest arguments
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  timeout 150 python -m pytest tests_safety -p no:randomly -p no:cacheprovider -q --no-header \
    --vsc-metadata="$META" --vsc-data-root="$WORK/root" --vsc-store="$STORE" --judge=keyword \
    --vsc-no-snapshots --vsc-fresh --vsc-json="$WORK/$label.json" \
    -m "baseline or typography" --vsc-sample="$N" --vsc-max-tokens=32 "$@" >"$WORK/$label.log" 2>&1
  local rc=$?
  t1=$(date +%s.%N)
  echo "$label rc=$rc (1: the gate failed, expected of a random model; 4: a usage error) $(python -c "print(f'{$t1 - $t0:.1f}')") s (log $WORK/$label.log)"
}

for B in 1 8 32; do
  session "hf-b$B" --model="hf/$CKPT" --vsc-device="$DEVICE" --vsc-batch-size="$B"
done

VLLM=no
if command -v vllm >/dev/null 2>&1 || { [ -z "${VSC_SKIP_PIP:-}" ] && timeout 240 pip install -q vllm; } >"$WORK/pip.log" 2>&1; then
  VLLM=yes
  session "vllm" --model="vllm/$CKPT" --vsc-vllm-timeout=240 --vsc-vllm-arg=--max-model-len=2048 \
    --vsc-vllm-arg=--enforce-eager
else
  echo "gpu_check: pip install vllm did not work here (see $WORK/pip.log): the vLLM path is not checked"
fi

# responses/s from the store (answer timestamps of each run), and equality with the one-by-one outputs
python - "$STORE" "$WORK" "$VLLM" <<'EOF'
import json, sqlite3, sys
from pathlib import Path
store, work, vllm = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "yes"
labels = ["hf-b1", "hf-b8", "hf-b32"] + (["vllm"] if vllm else [])
db = sqlite3.connect(store)
texts: dict[str, dict[str, str]] = {}
print(f"{'path':<10}{'responses':>10}{'ok':>6}{'resp/s':>9}  equal to hf-b1")
for label in labels:
    p = work / f"{label}.json"
    if not p.is_file():
        print(f"{label:<10} no result (see {work / (label + '.log')})")
        continue
    run = json.loads(p.read_text())["run_id"]
    (created,) = db.execute("SELECT created_at FROM runs WHERE run_id=?", (run,)).fetchone()
    rows = db.execute("SELECT item_id, status, text, created_at FROM responses WHERE run_id=?", (run,)).fetchall()
    texts[label] = {r[0]: r[2] or "" for r in rows}
    ok = sum(r[1] == "ok" for r in rows)
    span = max(r[3] for r in rows) - created if rows else 0.0  # the run is recorded once the model is loaded
    rate = len(rows) / span if span > 0 else float("nan")
    base = texts.get("hf-b1", {})
    same = sum(texts[label].get(i) == t for i, t in base.items())
    print(f"{label:<10}{len(rows):>10}{ok:>6}{rate:>9.1f}  {same}/{len(base)}")
print("(resp/s: from the run's creation, after the model loaded, to its last stored answer; vLLM's outputs need not "
      "equal transformers' token for token)")
EOF
echo "gpu_check: done ($WORK)"
