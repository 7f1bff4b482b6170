#!/usr/bin/env bash
# The GPU check: a few epochs of VaDE on CUDA, in one process and under a 1-GPU torchrun, the
# library / hand-written step ratio on the GPU, and the non-finite guard firing on CUDA.
#
#   bash experiments/perf/gpu.sh [DATA]      (DATA: fashion-mnist when installed, else digits)
#
# Run from the repository's root after `pip install -e .`, on a machine with CUDA; a few minutes.
# Everything goes to experiments/results/gpu/ (logs, the runs' history, overhead.json, summary.md).
set -euo pipefail
out=experiments/results/gpu
mkdir -p "$out"
py=${PYTHON:-python}
$py -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" \
  > "$out/device.txt"
data=${1:-fashion-mnist}
$py -c "from pyro_mixvae.data import load_dataset; load_dataset('$data')" 2>/dev/null || data=digits
fit=(fit vade --data "$data" --device cuda --epochs 3 --pretrain-epochs 2 --quiet)

# 1. one process, then 2. the same under torchrun with one GPU
rm -rf "$out/run" "$out/run-torchrun"
/usr/bin/env time -p $py -m pyro_mixvae "${fit[@]}" --out "$out/run" > "$out/run.log" 2>&1
/usr/bin/env time -p torchrun --standalone --nproc_per_node 1 -m pyro_mixvae "${fit[@]}" --distributed \
  --out "$out/run-torchrun" > "$out/run-torchrun.log" 2>&1

# 3. the library's SVI step against the same bound written by hand, on the GPU
$py experiments/perf/overhead.py --device cuda --quick --out "$out/overhead.json" > "$out/overhead.log" 2>&1

# 4. a NaN loss on CUDA stops training with NonFiniteLossError and keeps the last good checkpoint
$py - > "$out/nonfinite.log" 2>&1 <<'PY'
import tempfile, torch
from pyro_mixvae.data import load_dataset
from pyro_mixvae.errors import NonFiniteLossError
from pyro_mixvae.infer import default_elbo, fit
from pyro_mixvae.infer.train import TrainConfig
from pyro_mixvae.models import build

data = load_dataset("digits")
model = build("vade", data.x.shape[1:], 10, "bernoulli", {"hidden": (64, 64)}).cuda()
inner = default_elbo(model)

class NaNAtStep5:
    calls = 0
    def differentiable_loss(self, *args):
        self.calls += 1
        loss = inner.differentiable_loss(*args)
        return loss * float("nan") if self.calls == 5 else loss

try:
    fit(model, torch.as_tensor(data.x), config=TrainConfig(epochs=3, pretrain_epochs=0, device="cuda", jit=False,
        checkpoint_seconds=0), out_dir=tempfile.mkdtemp(), progress=False, elbo=NaNAtStep5())
    print("FAIL: no NonFiniteLossError")
except NonFiniteLossError as e:
    print("guard fired:", e)
PY

$py - "$out" > "$out/summary.md" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("device:", (out / "device.txt").read_text().strip())
for run in ("run", "run-torchrun"):
    rows = [json.loads(l) for l in (out / run / "history.jsonl").read_text().splitlines() if l.strip()]
    print(f"{run}: seconds per epoch", [round(r["seconds"], 2) for r in rows], "acc", [round(r.get("acc", 0), 3) for r in rows])
print("overhead:", (out / "overhead.json").read_text().strip())
print((out / "nonfinite.log").read_text().strip().splitlines()[-1])
PY
cat "$out/summary.md"
