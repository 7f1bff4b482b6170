#!/bin/bash
while kill -0 7391 2>/dev/null; do sleep 5; done
cd /work/wt-acc
OMP_NUM_THREADS=1 PYTHONPATH=/work/wt-acc /work/main/.venv/bin/python -m pyro_mixvae fit vib-gmm --data digits --seed 2 --device cpu --quiet --set gmm_assign=full --out /tmp/accprobe/runs/vib-full-s2 > /tmp/accprobe/runs/vib-full-s2.log 2>&1
