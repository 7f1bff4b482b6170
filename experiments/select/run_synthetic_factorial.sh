#!/bin/bash
# mixvae select with the factorial prior (one factor) on the synthetic set of seed S:
#   bash experiments/select/run_synthetic_factorial.sh SEED
set -e
S=$1
export OMP_NUM_THREADS=1
python experiments/select/synthetic.py --seed $S --out experiments/select/data/synthetic-$S.npz
python -m pyro_mixvae select --data experiments/select/data/synthetic-$S.npz --models factorial --clusters 2-8 \
  --restarts 3 --holdout 0.2 --epochs 100 --pretrain-epochs 20 --set dim=2 --set hidden=64,64 --set gmm_restarts=3 \
  --likelihood gaussian --seed $S --device cpu --quiet --out experiments/select/runs/synthetic-factorial-$S
