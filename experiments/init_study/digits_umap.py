"""Digits (the development set): UMAP (N2D's settings) against the library's t-SNE start, on VaDE's
50-epoch autoencoder codes of seeds 0-4 (saved by tsne_probe.py). Each: full-GMM starts on the
embedding, kept by silhouette; acc of the labels and of the diagonal Gaussians the model gets."""
import json, numpy as np
import umap
from scipy.stats import multivariate_normal as mvn
from sklearn.mixture import GaussianMixture
from sklearn.metrics import silhouette_score
from pyro_mixvae.data import load_dataset
from pyro_mixvae.infer.pretrain import _tsne_responsibilities
from pyro_mixvae.metrics import acc
y = load_dataset('digits').y

def diag_start(z, lab):
    ll = [np.log((lab == k).mean()) + mvn(z[lab == k].mean(0), np.diag(z[lab == k].var(0) + 1e-4)).logpdf(z)
          for k in range(10) if (lab == k).any()]
    return acc(y, np.argmax(ll, 0))

def umap_resp(z, seed, n_init=10):
    e = umap.UMAP(n_components=10, n_neighbors=20, min_dist=0.0, random_state=seed).fit_transform(z)
    rng = np.random.RandomState(seed); best, best_s = None, -np.inf
    for _ in range(n_init):
        resp = GaussianMixture(10, covariance_type='full', random_state=rng).fit(e).predict_proba(e)
        s = silhouette_score(e, resp.argmax(1))
        if s > best_s:
            best, best_s = resp, s
    return best

for s in range(5):
    z = np.load(f'/tmp/n2d/z_digits_s{s}.npy').astype(np.float64)
    out = {'seed': s}
    for name, resp in (('tsne', _tsne_responsibilities(z, 10, s, 10, 1e-4)), ('umap', umap_resp(z, s))):
        lab = resp.argmax(1)
        out[name + '_labels'] = round(acc(y, lab), 4); out[name + '_start'] = round(diag_start(z, lab), 4)
    print(json.dumps(out), flush=True)
