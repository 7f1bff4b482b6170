"""The model-side start: labels from t-SNE + GMM on the raw codes, then diagonal (what VaDE gets) vs full Gaussians in code space."""
import numpy as np
from sklearn.manifold import TSNE
from sklearn.mixture import GaussianMixture
from scipy.stats import multivariate_normal as mvn
from pyro_mixvae.data import load_dataset
from pyro_mixvae.metrics import acc
y = load_dataset('digits').y
for s in (0, 1):
    z = np.load(f'/tmp/n2d/z_digits_s{s}.npy')
    e = TSNE(3, init='pca', random_state=s).fit_transform(z)
    lab = GaussianMixture(10, covariance_type='full', n_init=10, random_state=s).fit(e).predict(e)
    out = {'tsne': acc(y, lab)}
    for cov in ('diag', 'full'):
        ll = []
        for k in range(10):
            zk = z[lab == k]; m = zk.mean(0)
            C = np.diag(zk.var(0) + 1e-4) if cov == 'diag' else np.cov(zk.T) + 1e-4 * np.eye(z.shape[1])
            ll.append(np.log((lab == k).mean()) + mvn(m, C).logpdf(z))
        out[cov] = acc(y, np.argmax(ll, 0))
    print(s, {k: round(v, 3) for k, v in out.items()})
