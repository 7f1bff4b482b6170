#!/bin/bash
# Re-apply the current rule to every finished synthetic / digits run (the candidates are cached: nothing is retrained)
set -e
export OMP_NUM_THREADS=1
for S in ${SEEDS:-0 1 2 3 4 5 6 7 8 9 10 11 12 13}; do
  [ -d experiments/select/runs/synthetic-$S/candidates ] || continue
  python -m pyro_mixvae select --data experiments/select/data/synthetic-$S.npz --models vade --clusters 2-8 \
    --restarts 3 --holdout 0.2 --epochs 100 --pretrain-epochs 20 --set latent_dim=2 --set hidden=64,64 \
    --set gmm_assign=diag --seed $S --device cpu --quiet --out experiments/select/runs/synthetic-$S > /dev/null
done
python -m pyro_mixvae select --data experiments/select/data/synthetic-0.npz --models factorial --clusters 2-8 \
  --restarts 3 --holdout 0.2 --epochs 100 --pretrain-epochs 20 --set dim=2 --set hidden=64,64 --set gmm_restarts=3 \
  --seed 0 --device cpu --quiet --out experiments/select/runs/synthetic-factorial-0 > /dev/null
python -m pyro_mixvae select --data digits --models vade --clusters 6,8,10,12,14 --restarts 3 --holdout 0.2 \
  --epochs 50 --pretrain-epochs 20 --set hidden=256,256 --set latent_dim=10 --set gmm_assign=diag --iw-samples 50 \
  --seed 0 --device cpu --quiet --out experiments/select/runs/digits-0 > /dev/null
python experiments/select/collect.py
