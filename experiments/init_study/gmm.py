"""Clustering variants on saved codes. Usage: gmm.py NAME [variants...]"""
import sys, glob, json, warnings
import numpy as np
warnings.filterwarnings('ignore')
from sklearn.mixture import GaussianMixture
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.metrics import silhouette_score
sys.path.insert(0, '/work/wt-acc')
from pyro_mixvae.metrics import acc

def std(z): return (z - z.mean(0)) / z.std(0)
def white(z):
    zc = z - z.mean(0); u, s, vt = np.linalg.svd(zc, full_matrices=False); return u * np.sqrt(len(z))
def gmm(z, cov='diag', n=10, init='kmeans', seed=0):
    g = GaussianMixture(10, covariance_type=cov, random_state=seed, n_init=n, reg_covar=1e-4, max_iter=200, init_params=init).fit(z)
    return g.predict(z), g
def diagM(z, resp, reg=1e-4):
    nk = resp.sum(0) + 1e-10; w = nk / len(z); mu = resp.T @ z / nk[:, None]
    var = (resp.T @ z**2) / nk[:, None] - mu**2 + reg
    lp = np.log(w) - 0.5 * (np.log(2*np.pi*var)[None] + (z[:, None, :] - mu[None])**2 / var[None]).sum(-1)
    return lp.argmax(1)
def full_diagM(z, s, standardise=True, n=10):
    zz = std(z) if standardise else z
    g = gmm(zz, cov='full', n=n, seed=s)[1]
    return diagM(z, g.predict_proba(zz))
V = {
 'std_full10_diagM': lambda z, s: full_diagM(z, s),
 'full10_diagM': lambda z, s: full_diagM(z, s, False),
 'std_full30_diagM': lambda z, s: full_diagM(z, s, n=30),
 'diag10': lambda z, s: gmm(z, seed=s)[0],
 'std_diag10': lambda z, s: gmm(std(z), seed=s)[0],
 'white_diag10': lambda z, s: gmm(white(z), seed=s)[0],
 'kpp_diag50': lambda z, s: gmm(z, n=50, init='k-means++', seed=s)[0],
 'std_kpp_diag50': lambda z, s: gmm(std(z), n=50, init='k-means++', seed=s)[0],
 'full10': lambda z, s: gmm(z, cov='full', seed=s)[0],
 'std_full10': lambda z, s: gmm(std(z), cov='full', seed=s)[0],
 'km10': lambda z, s: KMeans(10, n_init=10, random_state=s).fit_predict(z),
 'std_km10': lambda z, s: KMeans(10, n_init=10, random_state=s).fit_predict(std(z)),
 'cos_km10': lambda z, s: KMeans(10, n_init=10, random_state=s).fit_predict(z / np.linalg.norm(z, axis=1, keepdims=True)),
 'spec_nn10': lambda z, s: SpectralClustering(10, affinity='nearest_neighbors', n_neighbors=10, random_state=s, assign_labels='kmeans').fit_predict(z),
 'std_spec_nn10': lambda z, s: SpectralClustering(10, affinity='nearest_neighbors', n_neighbors=10, random_state=s).fit_predict(std(z)),
}
name = sys.argv[1]; vs = sys.argv[2:] or list(V)
res = {v: [] for v in vs}; am = []
files = sorted(glob.glob(f'/tmp/accprobe/codes/{name}/s*.npz'), key=lambda f: int(f.split('/s')[-1][:-4]))
for f in files:
    d = np.load(f); z = d['z'].astype(np.float64); y = d['y']; s = int(f.split('/s')[-1][:-4])
    am.append(float(d['acc_model']))
    for v in vs: res[v].append(acc(y, V[v](z, s)))
def row(k, a): a = np.array(a); print(f"{name:14s} {k:16s} mean {a.mean():.3f} min {a.min():.3f} | " + ' '.join(f'{x:.3f}' for x in a))
row('model(default)', am)
for v in vs: row(v, res[v])
json.dump(dict(acc_model=am, **res), open(f'/tmp/accprobe/codes/{name}/gmm.json', 'w'))
