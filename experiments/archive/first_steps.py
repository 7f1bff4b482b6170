"""What the first SVI steps do to a perfect start (issue 17): the measurement behind two defaults.

    python experiments/archive/first_steps.py [--model vade] [--seed 0] [--lr 2e-3] [--guide-scale untrained|components]
                                      [--steps 40] [--out experiments/results/archive/first_steps.json]

On the example of ``guides/cluster-your-own-data.md`` (4 groups of 50 points in 20 dimensions in
[0, 1]) the model is pretrained as ``mixvae fit`` does (autoencoder, then the mixture start). Then
q(z | x)'s scale head is either left as the pretraining leaves it (``components``: the library's
start, the components' variance) or re-drawn as PyTorch initialises a linear layer (``untrained``:
the start before the fix, sigma~ near 1). Then plain SVI steps with one fresh Adam at a constant
``lr`` (no warm-up), on minibatches of 100; after steps 0, 1, 2, 3, 5, 10, 20, 40 it records the
loss (-ELBO per point, all 200 points), how far the codes mu~(x) moved from their start (mean
Euclidean distance), the component sd (median), acc and clusters used. Appends one record per
call, with its command, to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from pyro_mixvae.infer.pretrain import encode_means
from pyro_mixvae.infer.train import default_elbo, make_optimizer, predict_proba, seed_everything
from pyro_mixvae.metrics import clustering_metrics
from pyro_mixvae.models import build
from pyro_mixvae.synthetic import guide_example

ARCHIVE = Path(__file__).resolve().parents[1] / "results" / "archive"

RECORD_AT = (0, 1, 2, 3, 5, 10, 20, 40, 100, 200)


def state(model, elbo, x, y, z0) -> dict:
    metrics = clustering_metrics(predict_proba(model, x).numpy(), y)
    with torch.no_grad():
        loss = float(elbo.loss(model.model, model.guide, x, len(x))) / len(x)
        moved = float((encode_means(model.encoder, x) - z0).norm(dim=1).mean())
    component_sd = float(model.prior_components()[0][2].detach().median())
    return {"loss": loss, "code_moved": moved, "component_sd": component_sd, "acc": metrics["acc"],
            "clusters_used": metrics["clusters_used"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vade")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--guide-scale", choices=("untrained", "components"), default="components")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default=str(ARCHIVE / "first_steps.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = guide_example()
    x, y = torch.as_tensor(data.x), data.y
    seed_everything(args.seed)
    model = build(args.model, data.x.shape[1:], 4, "bernoulli")
    model.pretrain(x, 50, 100, args.seed)
    if args.guide_scale == "untrained":
        model.encoder.log_var.reset_parameters()
    elbo = default_elbo(model)
    optimizer = make_optimizer(model.parameters(), args.lr)
    z0 = encode_means(model.encoder, x)
    generator = torch.Generator().manual_seed(args.seed)
    trace = {0: state(model, elbo, x, y, z0)}
    for step in range(1, args.steps + 1):
        idx = torch.randperm(len(x), generator=generator)[:100]
        loss = elbo.differentiable_loss(model.model, model.guide, x[idx], len(x)) / len(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in RECORD_AT:
            trace[step] = state(model, elbo, x, y, z0)
    for step, s in trace.items():
        print(f"step {step:3d}  loss {s['loss']:9.1f}  codes moved {s['code_moved']:.3f}  component sd "
              f"{s['component_sd']:.3f}  acc {s['acc']:.3f}  clusters used {s['clusters_used']}")
    record = {"command": "python experiments/archive/first_steps.py " + " ".join(sys.argv[1:] if argv is None else argv),
              **{k: v for k, v in vars(args).items() if k != "out"}, "trace": trace}
    out = Path(args.out)
    records = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps(records + [record], indent=1) + "\n")


if __name__ == "__main__":
    main()
