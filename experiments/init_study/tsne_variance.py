"""t-SNE (3-D) + full GMM on the saved codes (tsne_probe.py), raw vs standardised codes, three t-SNE random states."""
import numpy as np
from sklearn.manifold import TSNE
from sklearn.mixture import GaussianMixture
from pyro_mixvae.data import load_dataset
from pyro_mixvae.metrics import acc
y = load_dataset('digits').y
for s in (0, 1):
    z = np.load(f'/tmp/n2d/z_digits_s{s}.npy'); zs = (z - z.mean(0)) / z.std(0)
    for name, zz in (('raw', z), ('std', zs)):
        r = []
        for rs in range(3):
            e = TSNE(3, init='pca', random_state=rs).fit_transform(zz)
            r.append(acc(y, GaussianMixture(10, covariance_type='full', n_init=10, random_state=rs).fit(e).predict(e)))
        print(s, name, np.round(r, 3), flush=True)
