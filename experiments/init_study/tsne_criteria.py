"""Label-free criteria among the starts of a full GMM on the 3-D t-SNE of the saved codes (tsne_probe.py).

t-SNE's KL, the GMM's mean log-likelihood, and the silhouette of its labels on the embedding and on the
codes, for six random states. Usage: tsne_criteria.py SEED ...; output: tsne_criteria.log."""
import sys, json, numpy as np
from sklearn.manifold import TSNE
from sklearn.mixture import GaussianMixture
from sklearn.metrics import silhouette_score
from pyro_mixvae.data import load_dataset
from pyro_mixvae.metrics import acc
y = load_dataset('digits').y
for s in map(int, sys.argv[1:]):
    z = np.load(f'/tmp/n2d/z_digits_s{s}.npy')
    for rs in range(6):
        t = TSNE(3, init='pca', random_state=rs); e = t.fit_transform(z)
        g = GaussianMixture(10, covariance_type='full', n_init=10, random_state=rs).fit(e)
        lab = g.predict(e)
        print(json.dumps(dict(seed=s, rs=rs, acc=round(acc(y, lab), 3), kl=round(float(t.kl_divergence_), 4),
                              ll=round(float(g.score(e)), 4), sil=round(float(silhouette_score(e, lab)), 4),
                              sil_z=round(float(silhouette_score(z, lab)), 4))), flush=True)
