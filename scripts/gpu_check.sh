#!/usr/bin/env bash
# One prepared GPU check (a lent H100/H200), in two parts.
# (1) Stacked-training perf at the sizes the published default trains at, a stack of 20 as the
# grid stacks a 5-seed sweep: synth's d 64, K 256; minilm and prompts' d 384, K 384; correlated's
# d 48, K 64 (batch 128); then at the paper's sizes (3 x 32 x 32, K 4,096, batch 4,096, a stack
# of 4; PAPER_PERF=0 skips it).
# (2) The paper preset's largest offline dataset, superposition (4,096 true atoms in 512
# dimensions, K = 8,192, 100,000 samples, batch 1,024): every stackable variant on seed 0 with
# the controls, correlated_recovery; how many models converge within the preset's cap, and
# where the time goes. No ground_truth: it scores with sae_lens, which the device image lacks
# and which is too large to carry. No twins: each adds an evaluation (~10 s there), and the run
# must fit one call. The training stream is made on the CPU, one thread per cell, and on a GPU
# it is what a step waits for, so the variants' stacks run as 7 jobs side by side (JOBS).
# Outputs under $OUT (or /tmp). Pure-Python packages the device image lacks travel in .gpu_site
# (scripts/gpu_full_whitened8.sh says how to make it). VARIANTS narrows the paper run's variants
# and SET passes `--set` changes to it (e.g. PERF_SIZES= VARIANTS="mp jumprelu" for the two the
# first call left out or uncalibrated).
set -uo pipefail
out="${OUT:-/tmp/gpu_check}"; mkdir -p "$out"
export PYTHONPATH="$PWD/.gpu_site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
variants="relu dense topk batchtopk jumprelu matryoshka mp"
paper_variants="${VARIANTS:-$variants}"
for size in ${PERF_SIZES-"64 256" "384 384" "48 64"}; do
    set -- $size
    timeout "${PERF_LIMIT:-40}" python3 -m benchmark perf --device cuda --stack 20 --batch 128 \
        --input-shape "$1" --n-latents "$2" --steps 20 --variant $variants \
        --out "$out/perf_d$1_k$2.csv" 2>&1 | tail -12
done
[ "${PAPER_PERF:-1}" = 1 ] && timeout 90 python3 -m benchmark perf --device cuda --stack 4 \
    --batch 4096 --n-latents 4096 --input-shape 3 32 32 --steps 5 --variant $variants \
    --out "$out/perf_paper.csv" 2>&1 | tail -9
start=$(date +%s)
timeout "${LIMIT:-380}" python3 -m benchmark run --preset paper --task correlated_recovery \
    --dataset superposition --variant $paper_variants ${SET:+--set $SET} --seeds 0 --device cuda --jobs "${JOBS:-7}" \
    --no-twins --no-budget-check --no-progress --out "$out/paper" 2>&1 | tail -5
echo "paper superposition ($paper_variants x 4 settings, controls; seed 0${SET:+; $SET}): $(( $(date +%s) - start )) s wall"
python3 - "$out/paper/results.csv" <<'PY'
import sys, pandas as pd
r = pd.read_csv(sys.argv[1])
print(r.groupby("status").size().to_string())
m = r.drop_duplicates(["variant", "setting", "seed"])
m = m[m.steps.notna() & (m.steps > 0)]
print(m.groupby("variant").agg(models=("seed", "size"), converged=("converged", "sum"),
      median_steps=("steps", "median"), max_steps=("steps", "max"), cap=("step_cap", "max")).to_string())
ok = r[(r.status == "ok") & r.metric.isin(["support_f1", "mmcs", "recovery_90", "coherence"])]
print(ok.pivot_table(index=["variant", "setting"], columns="metric", values="value", aggfunc="mean").round(3).to_string())
print(r.groupby(["variant"]).timestamp_utc.agg(["min", "max"]).to_string())
PY
cp "$out/paper/results.csv" "$out/paper_superposition_results.csv" 2>/dev/null
cp "$out/paper/leaderboard.md" "$out/paper_superposition_leaderboard.md" 2>/dev/null
rm -rf "$out/paper"
true
