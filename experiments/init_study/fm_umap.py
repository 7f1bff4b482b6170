"""N2D's manifold learner on our autoencoder's Fashion-MNIST codes: UMAP (10-D, 20 neighbours, min_dist 0)
of all 70000 codes, then single full-GMM starts on the embedding: acc and silhouette (5000 sampled) of each.

Usage: PYTHONPATH=<umap-learn> fm_umap.py RUN_DIR SEED   (umap-learn is not a dependency of the library)"""
import sys, time, json, numpy as np, torch
import umap
from pyro_mixvae.runs import load_run
from pyro_mixvae.data import load_dataset
from pyro_mixvae.infer.pretrain import encode_means
from pyro_mixvae.metrics import acc
from sklearn.mixture import GaussianMixture
from sklearn.metrics import silhouette_score
run, seed = sys.argv[1], int(sys.argv[2])
m, _ = load_run(run)
d = load_dataset('fashion-mnist'); x = torch.as_tensor(d.x); y = np.asarray(d.y)
with torch.no_grad():
    z = encode_means(m.encoder, x).numpy()
t = time.time()
e = umap.UMAP(n_components=10, n_neighbors=20, min_dist=0.0, random_state=seed).fit_transform(z)
out = dict(run=run.rstrip('/').split('/')[-1], t_umap=round(time.time() - t, 1), starts=[])
for r in range(5):
    lab = GaussianMixture(10, covariance_type='full', random_state=r).fit(e).predict(e)
    out['starts'].append(dict(acc=round(acc(y, lab), 4),
                              silhouette=round(float(silhouette_score(e, lab, sample_size=5000, random_state=0)), 4)))
print(json.dumps(out), flush=True)
