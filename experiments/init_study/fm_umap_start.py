"""Does VaDE's SVI keep a UMAP start? Copies a `--epochs 0` run directory (its autoencoder and checkpoint),
replaces the mixture's start with the diagonal moments of the silhouette-kept full-GMM start on a UMAP
embedding of all codes (N2D's settings: 10-D, 20 neighbours, min_dist 0), then
`mixvae fit ... --resume --epochs E` continues it.

Usage: PYTHONPATH=<umap-learn> umap_start.py SRC_RUN DST_RUN SEED"""
import sys, shutil, json, numpy as np, torch
import umap
from pyro_mixvae.runs import load_run
from pyro_mixvae.data import load_dataset
from pyro_mixvae.infer.pretrain import encode_means
from pyro_mixvae.infer.checkpoint import load_checkpoint
from pyro_mixvae.metrics import acc
from sklearn.mixture import GaussianMixture
from sklearn.metrics import silhouette_score
src, dst, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
shutil.copytree(src, dst)
m, _ = load_run(dst)
d = load_dataset('fashion-mnist'); x = torch.as_tensor(d.x); y = np.asarray(d.y)
with torch.no_grad():
    z = encode_means(m.encoder, x).numpy().astype(np.float64)
e = umap.UMAP(n_components=10, n_neighbors=20, min_dist=0.0, random_state=seed).fit_transform(z)
rng = np.random.RandomState(seed)
best, best_s = None, -np.inf
for _ in range(5):
    resp = GaussianMixture(10, covariance_type='full', random_state=rng).fit(e).predict_proba(e)
    s = silhouette_score(e, resp.argmax(1), sample_size=5000, random_state=0)
    if s > best_s:
        best, best_s = resp, s
nk = best.sum(0) + 1e-12
means = best.T @ z / nk[:, None]
var = np.maximum(best.T @ z ** 2 / nk[:, None] - means ** 2, 0) + 1e-4
with torch.no_grad():
    m.pi_logits.copy_(torch.as_tensor(np.log(nk / nk.sum()), dtype=torch.float32))
    m.mu_c.copy_(torch.as_tensor(means, dtype=torch.float32))
    m.log_var_c.copy_(torch.as_tensor(np.log(var), dtype=torch.float32))
    g = torch.cat([m.responsibilities(xb) for xb in x.split(2000)]).numpy()
state = load_checkpoint(f'{dst}/checkpoint.pt')
state['model'] = m.state_dict()
torch.save(state, f'{dst}/checkpoint.pt')
print(json.dumps(dict(umap_labels_acc=round(acc(y, best.argmax(1)), 4), silhouette=round(float(best_s), 4),
                      model_start_acc=round(acc(y, g.argmax(1)), 4))), flush=True)
