#!/usr/bin/env bash
# One prepared GPU session (a lent H100/H200): stacked-training perf at the default's and the
# paper's sizes, then the paper preset's largest offline dataset (superposition: 4,096 true atoms
# in 512 dimensions, K = 8,192) for two variants with the controls. Outputs under $OUT (or /tmp).
# Pure-Python packages the device image lacks travel in .gpu_site (see the closing note).
set -uo pipefail
out="${OUT:-/tmp/gpu_check}"; mkdir -p "$out"
export PYTHONPATH="$PWD/.gpu_site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
timeout 60 python3 -m benchmark perf --device cuda --stack 8 --batch 128 --n-latents 256 --input-shape 192 \
    --steps 20 --out "$out/perf_default.csv" 2>&1 | tee "$out/perf_default.log"
timeout 90 python3 -m benchmark perf --device cuda --stack 4 --batch 4096 --n-latents 4096 --input-shape 3 32 32 \
    --steps 5 --out "$out/perf_paper.csv" 2>&1 | tee "$out/perf_paper.log"
start=$(date +%s)
timeout 170 python3 -m benchmark run --preset paper --task correlated_recovery --dataset superposition \
    --variant topk relu --seeds 0 --device cuda --no-budget-check --no-progress --out "$out/paper" 2>&1 | tail -5
echo "paper superposition (topk, relu, controls; seed 0): $(( $(date +%s) - start )) s wall"
python3 - "$out/paper/results.csv" <<'PY'
import sys, pandas as pd
r = pd.read_csv(sys.argv[1])
ok = r[r.status == "ok"]
print(ok[ok.metric.isin(["recovery_90", "support_f1", "mcc"])].pivot_table(index=["variant", "setting"], columns="metric", values="value").round(3).to_string())
print(r.drop_duplicates(["variant", "setting"])[["variant", "setting", "l0", "steps", "step_cap", "converged"]].to_string())
PY
cp "$out/paper/results.csv" "$out/paper_results.csv" 2>/dev/null; cp "$out/paper/leaderboard.md" "$out/paper_leaderboard.md" 2>/dev/null
true
