#!/usr/bin/env bash
# One prepared GPU check (a lent H100/H200): does whitened8 converge under the `full` preset's
# 20,000-step cap, how many steps does the plateau criterion need, and its reconstruction table
# at the headline L0 against the controls. The stackable variants (relu, topk, batchtopk,
# jumprelu, matryoshka, mp) on the preset's five seeds, reconstruction only, with the controls;
# then the stacked-training perf at the default's sizes (with each variant's floor). Outputs
# under $OUT (or /tmp). Pure-Python packages the device image lacks travel in .gpu_site, made
# from a CPU install and named in the device call's carry:
#   mkdir .gpu_site && for p in dill fvcore iopath termcolor yacs mlxtend; do
#     cp -r .venv/lib/python3.*/site-packages/$p .gpu_site/; done; echo /.gpu_site/ >> .git/info/exclude
set -uo pipefail
out="${OUT:-/tmp/gpu_full_whitened8}"; mkdir -p "$out"
export PYTHONPATH="$PWD/.gpu_site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
start=$(date +%s)
timeout "${LIMIT:-480}" python3 -m benchmark run --preset full --task reconstruction --dataset whitened8 \
    --variant relu topk batchtopk jumprelu matryoshka mp --device cuda --in-process \
    --cell-timeout 460 --no-budget-check --no-twins --no-progress --out "$out/full" 2>&1 | tail -5
echo "full whitened8 (6 stackable variants x 4 settings x 5 seeds, controls): $(( $(date +%s) - start )) s wall"
python3 - "$out/full/results.csv" <<'PY'
import sys, pandas as pd
r = pd.read_csv(sys.argv[1])
m = r.drop_duplicates(["variant", "setting", "seed"])
m = m[m.steps.notna()]
print(m.groupby("variant").agg(models=("seed", "size"), converged=("converged", "sum"),
      median_steps=("steps", "median"), max_steps=("steps", "max")).to_string())
ok = r[(r.status == "ok") & (r.metric == "r2")]
print(ok.pivot_table(index=["variant", "setting"], values=["l0", "value"], aggfunc="mean").round(3).to_string())
PY
cp "$out/full/results.csv" "$out/full_results.csv" 2>/dev/null; cp "$out/full/leaderboard.md" "$out/full_leaderboard.md" 2>/dev/null
rm -rf "$out/full"
timeout "${PERF_LIMIT:-60}" python3 -m benchmark perf --device cuda --stack 8 --batch 128 --n-latents 256 \
    --input-shape 192 --steps 20 --out "$out/perf_default.csv" 2>&1 | tee "$out/perf_default.log"
true
