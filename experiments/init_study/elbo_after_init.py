import sys, json, torch, numpy as np
from pyro_mixvae.data import load_dataset
from pyro_mixvae.models import build
from pyro_mixvae.infer.train import fit, TrainConfig, predict_proba
from pyro_mixvae.evaluation import elbo_per_point
from pyro_mixvae.metrics import clustering_metrics
import pyro
model_name = sys.argv[1]; pe = int(sys.argv[2]); seeds = [int(s) for s in sys.argv[3].split(",")]
ds = load_dataset("digits")
x = torch.as_tensor(ds.x, dtype=torch.float32)
for seed in seeds:
    pyro.clear_param_store()
    m = build(model_name, x.shape[1:], 10, "bernoulli")
    h = fit(m, x, ds.y, config=TrainConfig(epochs=0, pretrain_epochs=pe, seed=seed, device="cpu"), progress=False)
    e = elbo_per_point(m, x, num_particles=5)
    print(json.dumps({"seed": seed, "acc0": round(h.pretrain["acc"],3), "elbo0": round(e,3), "recon": round(h.pretrain.get("pretrain_recon"),3)}), flush=True)
