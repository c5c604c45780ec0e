#!/usr/bin/env bash
# One prepared GPU check (a lent H100/H200): does whitened8 converge under the `full` preset's
# 20,000-step cap, and how many steps does the plateau criterion need? The stackable variants
# (relu, topk, batchtopk, jumprelu, matryoshka, mp) on all three seeds, reconstruction only,
# with the controls. Outputs under $OUT (or /tmp). Pure-Python packages the device image lacks
# travel in .gpu_site (see scripts/gpu_check.sh).
set -uo pipefail
out="${OUT:-/tmp/gpu_full_whitened8}"; mkdir -p "$out"
export PYTHONPATH="$PWD/.gpu_site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
start=$(date +%s)
timeout "${LIMIT:-480}" python3 -m benchmark run --preset full --task reconstruction --dataset whitened8 \
    --variant relu topk batchtopk jumprelu matryoshka mp --seeds 0 1 2 --device cuda --in-process \
    --cell-timeout 460 --no-budget-check --no-progress --out "$out/full" 2>&1 | tail -5
echo "full whitened8 (6 stackable variants x 4 settings x 3 seeds, controls): $(( $(date +%s) - start )) s wall"
python3 - "$out/full/results.csv" <<'PY'
import sys, pandas as pd
r = pd.read_csv(sys.argv[1])
m = r.drop_duplicates(["variant", "setting", "seed"])
m = m[m.steps.notna()]
print(m.groupby("variant").agg(models=("seed", "size"), converged=("converged", "sum"),
      median_steps=("steps", "median"), max_steps=("steps", "max")).to_string())
ok = r[(r.status == "ok") & (r.metric == "r2")]
print(ok.pivot_table(index=["variant", "setting"], columns="seed", values=["l0", "value"]).round(3).to_string())
PY
cp "$out/full/results.csv" "$out/full_results.csv" 2>/dev/null; cp "$out/full/leaderboard.md" "$out/full_leaderboard.md" 2>/dev/null
true
