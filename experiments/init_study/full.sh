#!/bin/bash
cd /work/wt-acc
for s in "$@"; do
  for v in full diag; do
    OMP_NUM_THREADS=1 PYTHONPATH=/work/wt-acc /work/main/.venv/bin/python -m pyro_mixvae fit vib-gmm --data digits --seed $s --device cpu --quiet --set gmm_assign=$v --out /tmp/accprobe/runs/vib-$v-s$s > /tmp/accprobe/runs/vib-$v-s$s.log 2>&1
    python3 -c "import json;m=json.load(open('/tmp/accprobe/runs/vib-$v-s$s/metrics.json'));print('$v', $s, 'start', round(m['pretrain']['acc'],3), 'final', round(m['acc'],3), 'used', m['clusters_used'], 'sec', round(m.get('train_seconds',0)))"
  done
done
