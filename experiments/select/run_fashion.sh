#!/bin/bash
# mixvae select on Fashion-MNIST's test split (10,000 images, 10 classes) at a CPU budget: VaDE with the
# digits run's smaller network and short training (20 + 30 epochs), K = 6..14, 3 restarts:
#   bash experiments/select/run_fashion.sh          (needs the data: apt-get install dataset-fashion-mnist)
set -e
export OMP_NUM_THREADS=1
python -m pyro_mixvae select --data fashion-mnist --split test --models vade --clusters 6,8,10,12,14 --restarts 3 \
  --holdout 0.2 --epochs 30 --pretrain-epochs 20 --set hidden=256,256 --set latent_dim=10 --set gmm_assign=diag \
  --iw-samples 50 --seed 0 --device cpu --quiet --out experiments/select/runs/fashion-0
