#!/bin/bash
# mixvae select on the synthetic set with K_TRUE = 5 (experiments/select/synthetic.py), one data seed per call:
#   bash experiments/select/run_synthetic.sh SEED        (RESTARTS=5: five restarts per K, in synthetic-SEED-r5)
# The likelihood is the per-point Gaussian (VaDE eq. 2), the default for this set when these runs were made;
# LIKELIHOOD=auto (today gaussian-shared on 1,000 points) runs into synthetic-SEED-auto
set -e
S=$1
export OMP_NUM_THREADS=1
python experiments/select/synthetic.py --seed $S --out experiments/select/data/synthetic-$S.npz
python -m pyro_mixvae select --data experiments/select/data/synthetic-$S.npz --models vade --clusters 2-8 \
  --restarts ${RESTARTS:-3} --holdout 0.2 --epochs 100 --pretrain-epochs 20 --set latent_dim=2 --set hidden=64,64 \
  --set gmm_assign=diag --likelihood ${LIKELIHOOD:-gaussian} --seed $S --device cpu --quiet \
  --out experiments/select/runs/synthetic-$S${RESTARTS:+-r$RESTARTS}${LIKELIHOOD:+-$LIKELIHOOD}
