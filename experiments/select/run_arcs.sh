#!/bin/bash
# mixvae select on the arcs set (five noisy half-circle arcs in 2-D, 10,000 points): VaDE, K = 2..8, 3 restarts:
#   bash experiments/select/run_arcs.sh
set -e
export OMP_NUM_THREADS=1
python -m pyro_mixvae select --data arcs --models vade --clusters 2-8 --restarts 3 --holdout 0.2 \
  --epochs 50 --pretrain-epochs 20 --set latent_dim=2 --set hidden=64,64 --set gmm_assign=diag \
  --seed 0 --device cpu --quiet --out experiments/select/runs/arcs-0
