#!/usr/bin/env bash
# The README's main job, `mixvae fit vade --data digits` (another model with MODEL=..., other data with DATA=...,
# a name or a file such as experiments/stable_answer.py's RUNS/data/iris.npz), timed wall-clock
# (install excluded) in each checkout given, in turn, ROUNDS times, on this machine with its default threads; prints one line
# per run: checkout, round, seconds, the acc it printed. Side by side, so a ratio between checkouts
# holds on a noisy machine.
#
#   [MODEL=vade] [DATA=digits] bash experiments/perf/main_job.sh [ROUNDS] [CHECKOUT ...]   (default: 1 round, this checkout)
#
# A checkout is a directory holding pyro_mixvae/ (e.g. `git worktree add --detach ../before COMMIT`);
# it runs with this checkout's .venv and PYTHONPATH=CHECKOUT.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
model="${MODEL:-vade}"
data="${DATA:-digits}"
rounds="${1:-1}"; shift || true
checkouts=("${@:-$here}")
out="$(mktemp -d)"
for round in $(seq 1 "$rounds"); do
  for checkout in "${checkouts[@]}"; do
    start=$(date +%s.%N)
    acc=$(PYTHONPATH="$checkout" "$here/.venv/bin/mixvae" fit "$model" --data "$data" --out "$out/run-$round-$(basename "$checkout")" \
          --quiet 2>/dev/null | awk '$1 == "acc" {print $2}')
    end=$(date +%s.%N)
    echo "$model $(basename "$data") $(basename "$checkout") round $round: $(echo "$end - $start" | bc) s, acc $acc"
  done
done
rm -rf "$out"
