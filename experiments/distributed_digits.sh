#!/usr/bin/env bash
# VaDE on digits, one process vs two gloo ranks (torchrun) with the same settings, seeds 0-4,
# then each two-rank checkpoint resumed for 10 more epochs in one process.
# Usage: experiments/distributed_digits.sh OUT_DIR   (CPU; OMP_NUM_THREADS=1 per process)
set -euo pipefail
OUT=${1:-experiments/runs/distributed}
PY=${PYTHON:-python}
export OMP_NUM_THREADS=1
COMMON=(vade --data digits --set hidden=128,128 --pretrain-epochs 50 --epochs 100 --device cpu --quiet)
for seed in 0 1 2 3 4; do
  $PY -m pyro_mixvae fit "${COMMON[@]}" --seed $seed --out "$OUT/single-seed$seed"
  $PY -m torch.distributed.run --nproc_per_node 2 --master_port $((29600 + seed)) \
      -m pyro_mixvae fit "${COMMON[@]}" --seed $seed --out "$OUT/ddp2-seed$seed"
  cp -r "$OUT/ddp2-seed$seed" "$OUT/ddp2-seed$seed-resumed1p"
  $PY -m pyro_mixvae fit "${COMMON[@]}" --seed $seed --epochs 110 --resume \
      --out "$OUT/ddp2-seed$seed-resumed1p"
done
