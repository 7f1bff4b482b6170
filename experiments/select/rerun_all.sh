#!/bin/bash
# Re-apply the current rule to every finished run (the candidates are cached: nothing done is retrained; a
# missing candidate is trained) and rewrite experiments/results/select.{json,md}
set -e
cd "$(dirname "$0")/../.."
for S in ${SEEDS:-$(seq 0 18)}; do
  [ -d experiments/select/runs/synthetic-$S/candidates ] && bash experiments/select/run_synthetic.sh $S > /dev/null
  [ -d experiments/select/runs/synthetic-$S-r5/candidates ] && RESTARTS=5 bash experiments/select/run_synthetic.sh $S > /dev/null
done
bash experiments/select/run_synthetic_factorial.sh 0 > /dev/null
bash experiments/select/run_digits.sh > /dev/null
bash experiments/select/run_arcs.sh > /dev/null
[ -d experiments/select/runs/fashion-0/candidates ] && bash experiments/select/run_fashion.sh > /dev/null
python experiments/select/collect.py
