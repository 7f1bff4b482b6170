#!/bin/bash
# usage: queue.sh NAME args...   (runs seeds 0..9)
name=$1; shift
for s in 0 1 2 3 4 5 6 7 8 9; do
  OMP_NUM_THREADS=1 PYTHONPATH=/work/wt-acc /work/main/.venv/bin/python /tmp/accprobe/ae.py $name $s "$@" 2>&1 | tail -1
done
