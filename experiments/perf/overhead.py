"""How far the library's SVI step is from the same bound written by hand (issue 8).

In one process, interleaved (library step, hand-written step, alternating which goes first),
after a warm-up, the median over ``--steps`` steps of

* the library's training step: :func:`pyro_mixvae.infer.train.svi_step` -- the model's Pyro
  programs, its ELBO object (``model.make_elbo``, ``TraceEnum_ELBO`` for these two) and the
  optimizer of :func:`~pyro_mixvae.infer.train.make_optimizer` -- exactly what ``fit`` runs;
* the limit: the same bound written as a plain torch loss on the same networks (a copy with the
  same weights), backward, and the same Adam step (:func:`vade_loss`, :func:`gmvae_loss`);

for (a) VaDE with the DEC network 784-500-500-2000-10 at B = 100 (``dec_ratio``) and (b) GMVAE
(posterior guide) with the fc-120 networks on 2-D data at B = 128 (``small_ratio``). Both losses
are first checked to be the same number under the same random draws.

Also measured: the ratio under the configurations the library used before (torch's default
Adam, Pyro's validation on), the library's step time against K (10, 30, 100) and num_particles
(1, 10; vectorised or not) on the DEC network, and -- when Fashion-MNIST is installed -- one
epoch of ``mixvae fit vade`` on its 70k images and the peak RSS of that run (a child process).

    OMP_NUM_THREADS=1 python experiments/perf/overhead.py [--steps 30] [--warmup 5] [--skip-fashion] [--out FILE]
                                                           [--device cuda] [--quick]

On CUDA every timed step ends with ``torch.cuda.synchronize()``; ``--quick`` measures the two
ratios only (no variants, K, particles or Fashion-MNIST epoch).

About 3 minutes on one core. The last printed line is a JSON object (``dec_ratio``, ``small_ratio``,
..., and the ``command``); it is also written to ``--out`` (default ``experiments/results/perf.json``).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F

from pyro_mixvae.infer.compiled import compiled_loss
from pyro_mixvae.infer.train import make_optimizer, svi_step
from pyro_mixvae.models import build

_LOG_2PI = math.log(2 * math.pi)


def normal_log_prob(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - torch.log(scale) - 0.5 * _LOG_2PI


# -- the bounds by hand ---------------------------------------------------------------------------
def vade_loss(m, x, num_data):
    """VaDE's collapsed bound (vade.txt eq. 15 with q(c|x) = p(c|z)), one draw z ~ q(z|x), as a loss per point:
    -(N/B) sum_n [log p(x_n|z_n) + log sum_c pi_c N(z_n; mu_c, sigma_c^2) - log q(z_n|x_n)] / N."""
    loc, scale = m.encoder(x)
    z = loc + scale * torch.randn_like(loc)
    log_q = normal_log_prob(z, loc, scale).sum(-1)
    log_pi = torch.log_softmax(m.pi_logits, -1)
    log_pz = torch.logsumexp(log_pi + normal_log_prob(z.unsqueeze(-2), m.mu_c, torch.exp(0.5 * m.log_var_c)).sum(-1), -1)
    log_px = -F.binary_cross_entropy_with_logits(m.decoder(z), x, reduction="none").sum(-1)
    return -(log_px + log_pz - log_q).sum() / x.shape[0]


def gmvae_loss(m, x, num_data):
    """The minimum-information GMVAE bound (its eq. 4, c summed out exactly), one draw of w and z:
    log p(x|z) + log p(w) + log sum_c (1/K) N(z; mu_c(w), sigma_c^2(w)) - log q(z|x) - log q(w|x)."""
    z_loc, z_scale, w_loc, w_scale, _ = m.encode(x)
    w = w_loc + w_scale * torch.randn_like(w_loc)
    z = z_loc + z_scale * torch.randn_like(z_loc)
    log_q = normal_log_prob(z, z_loc, z_scale).sum(-1) + normal_log_prob(w, w_loc, w_scale).sum(-1)
    log_pw = (-0.5 * w ** 2 - 0.5 * _LOG_2PI).sum(-1)
    loc, scale = m.components(w)                                             # (B, K, D)
    K = loc.shape[-2]
    log_pz = torch.logsumexp(normal_log_prob(z.unsqueeze(-2), loc, scale).sum(-1), -1) - math.log(K)
    x_loc, x_log_var = m.decoder(z).unbind(-2)
    x_scale = torch.exp(0.5 * x_log_var.clamp(-10.0, 10.0))
    log_px = normal_log_prob(x, x_loc, x_scale).sum(-1)
    return -(log_px + log_pw + log_pz - log_q).sum() / x.shape[0]


def finite(loss) -> bool:
    """fit's check on CPU, every step (a NaN must not reach the optimizer)."""
    return bool(torch.isfinite(loss))


def hand_step(m, loss_fn, optimizer, x, num_data):
    loss = loss_fn(m, x, num_data)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# -- the two cases ----------------------------------------------------------------------------------
DEVICE = torch.device("cpu")  # --device


def case(name, n_clusters=10):
    """(model, hand-written loss, batch, N) of case ``dec`` or ``small``, on ``DEVICE``."""
    torch.manual_seed(0)
    if name == "dec":
        model = build("vade", (784,), n_clusters, "bernoulli")
        x = (torch.rand(100, 784) < 0.3).float()
        return model.to(DEVICE), vade_loss, x.to(DEVICE), 70000
    model = build("gmvae", (2,), 8, "gaussian", {"guide": "posterior"})
    x = torch.randn(128, 2)
    return model.to(DEVICE), gmvae_loss, x.to(DEVICE), 10000


def timed(fn):
    """Seconds of ``fn()``, the device's queued work included."""
    sync = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def same_bound(name) -> float:
    """|library loss - hand-written loss| under the same random draws (both per data point)."""
    model, loss_fn, x, n = case(name)
    elbo = model.make_elbo(1)
    with pyro.validation_enabled(False):
        torch.manual_seed(1)
        lib = float(elbo.differentiable_loss(model.model, model.guide, x, n).detach() / n)
    torch.manual_seed(1)
    hand = float(loss_fn(model, x, n))
    return abs(lib - hand) / max(1.0, abs(hand))


def ratio(name, steps, warmup, *, optimizer="library", validate=False, jit=None) -> dict:
    """Median step times of the library and the hand-written step, interleaved.

    The defaults are ``fit``'s; ``optimizer="torch-default"`` (torch's Adam without the fused
    kernel), ``validate=True`` and ``jit=False`` give the configurations it used before."""
    model, hand_loss, x, n = case(name)
    hand_model = copy.deepcopy(model)
    loss_fn = compiled_loss(model.make_elbo(1), model, jit)
    if optimizer == "library":
        lib_opt = make_optimizer(model.parameters(), 1e-4)
    else:  # what fit used before: torch's default Adam (a Python loop over the parameters on CPU)
        lib_opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    hand_opt = make_optimizer(hand_model.parameters(), 1e-4)
    lib_t, hand_t = [], []
    with pyro.validation_enabled(validate):
        for i in range(warmup + steps):
            run_lib = lambda: svi_step(model, loss_fn, lib_opt, x, n, is_finite=finite)  # noqa: E731
            run_hand = lambda: hand_step(hand_model, hand_loss, hand_opt, x, n)  # noqa: E731
            if i % 2:
                a, b = timed(run_lib), timed(run_hand)
            else:
                b, a = timed(run_hand), timed(run_lib)
            if i >= warmup:
                lib_t.append(a)
                hand_t.append(b)
    lib_ms, hand_ms = 1e3 * statistics.median(lib_t), 1e3 * statistics.median(hand_t)
    return {"library_ms": round(lib_ms, 3), "hand_ms": round(hand_ms, 3), "ratio": round(lib_ms / hand_ms, 3)}


def library_step_ms(steps, warmup, *, n_clusters=10, num_particles=1, vectorize=True) -> float:
    model, _, x, n = case("dec", n_clusters)
    from pyro.infer import TraceEnum_ELBO

    elbo = TraceEnum_ELBO(max_plate_nesting=1, num_particles=num_particles, vectorize_particles=vectorize)
    loss_fn = compiled_loss(elbo, model)
    opt = make_optimizer(model.parameters(), 1e-4)
    times = []
    with pyro.validation_enabled(False):
        for i in range(warmup + steps):
            t = timed(lambda: svi_step(model, loss_fn, opt, x, n, is_finite=finite))
            if i >= warmup:
                times.append(t)
    return round(1e3 * statistics.median(times), 3)


def optimizer_step_ms(steps, warmup) -> dict:
    """The optimizer step alone on the DEC network's parameters (fixed random gradients):
    torch's default Adam against the fused one of ``make_optimizer``."""
    model, _, _, _ = case("dec")
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    out = {}
    for label, opt in (("default", torch.optim.Adam(model.parameters(), lr=1e-4)),
                       ("fused", make_optimizer(model.parameters(), 1e-4))):
        times = [timed(opt.step) for _ in range(warmup + steps)][warmup:]
        out[label] = round(1e3 * statistics.median(times), 3)
    return out


def fashion_epoch(data_dir="/usr/share/datasets/fashion-mnist") -> dict:
    """One epoch of ``mixvae fit vade`` on Fashion-MNIST's 70k images in a child process: its SVI
    seconds (history) and the child's peak RSS."""
    if not Path(data_dir, "train-images-idx3-ubyte.gz").exists():
        return {"fashion_epoch_s": None, "fashion_peak_rss_mb": None, "fashion_note": f"no data in {data_dir}"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pyro_mixvae", "fit", "vade", "--data", "fashion-mnist", "--epochs", "1",
               "--pretrain-epochs", "0", "--device", "cpu", "--out", tmp, "--quiet"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        record = json.loads(Path(tmp, "history.jsonl").read_text().splitlines()[-1])
    rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
    return {"fashion_epoch_s": round(record["seconds"], 2), "fashion_peak_rss_mb": round(rss_kb / 1024, 1)}


# the configurations fit used before each change of docs/studies/perf.md, against the same limit
VARIANTS = {
    "eager_default_adam": {"jit": False, "optimizer": "torch-default"},   # before: no trace, torch's Adam
    "eager": {"jit": False},                                              # + the fused Adam
    "eager_validated": {"jit": False, "validate": True},                  # what Pyro's validation costs
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement (median)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--skip-fashion", action="store_true", help="skip the Fashion-MNIST epoch and RSS")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "perf.json",
                   help="where the JSON goes (default: experiments/results/perf.json)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quick", action="store_true", help="the two ratios only")
    args = p.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    S, W = args.steps, args.warmup
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(script.parents[2]) if argv is None else "experiments/perf/overhead.py"
    result = {"command": shlex.join(["python", str(shown), *(sys.argv[1:] if argv is None else argv)]),
              "torch": torch.__version__, "pyro": pyro.__version__, "threads": torch.get_num_threads(), "steps": S,
              "device": str(DEVICE)}
    for name in ("dec", "small"):
        gap = same_bound(name)
        print(f"{name}: library and hand-written loss differ by {gap:.2e} (relative) under the same draws", flush=True)
        if gap > 1e-4:
            raise SystemExit(f"{name}: the hand-written bound is not the library's ({gap:.2e}); fix before timing")
        now = ratio(name, S, W)
        result[f"{name}_ratio"] = now["ratio"]
        result[name] = now
        print(f"{name}: library {now['library_ms']} ms, hand-written {now['hand_ms']} ms -> ratio {now['ratio']}",
              flush=True)
        for label, kwargs in ({} if args.quick else VARIANTS).items():
            result[f"{name}_{label}"] = ratio(name, S, W, **kwargs)
            print(f"  {label}: ratio {result[f'{name}_{label}']['ratio']}", flush=True)
    if args.quick:
        return _write(result, args.out)
    result["adam_step_ms"] = optimizer_step_ms(S, W)
    print(f"Adam step alone (DEC net): {result['adam_step_ms']}", flush=True)
    result["k_step_ms"] = {k: library_step_ms(S, W, n_clusters=k) for k in (10, 30, 100)}
    result["k100_over_k10"] = round(result["k_step_ms"][100] / result["k_step_ms"][10], 3)
    print(f"step against K (DEC net): {result['k_step_ms']}", flush=True)
    result["particles_step_ms"] = {f"{p}{'' if v else '-loop'}": library_step_ms(S, W, num_particles=p, vectorize=v)
                                   for p, v in ((1, True), (10, True), (10, False))}
    print(f"step against num_particles (DEC net): {result['particles_step_ms']}", flush=True)
    if not args.skip_fashion:
        result.update(fashion_epoch())
        print(f"Fashion-MNIST: one epoch {result['fashion_epoch_s']} s, peak RSS {result['fashion_peak_rss_mb']} MB",
              flush=True)
    _write(result, args.out)


def _write(result: dict, out: Path) -> None:
    line = json.dumps(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
