#!/bin/bash
# mixvae select on digits (sklearn's 8x8, 1797 points, 10 classes), VaDE with a smaller network than the default
#   bash experiments/select/run_digits.sh
set -e
export OMP_NUM_THREADS=1
python -m pyro_mixvae select --data digits --models vade --clusters 6,8,10,12,14 --restarts 3 --holdout 0.2 \
  --epochs 50 --pretrain-epochs 20 --set hidden=256,256 --set latent_dim=10 --set gmm_assign=diag --iw-samples 50 \
  --seed 0 --device cpu --quiet --out experiments/select/runs/digits-0
