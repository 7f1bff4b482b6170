"""Central-partition selection and co-association consensus over a pool of pretrainings."""
import sys, glob, itertools, numpy as np, warnings; warnings.filterwarnings('ignore')
sys.path.insert(0, '/work/wt-acc')
from pyro_mixvae.metrics import acc
from sklearn.mixture import GaussianMixture
from sklearn.metrics import adjusted_rand_score as ari, normalized_mutual_info_score as nmi
from sklearn.cluster import SpectralClustering, AgglomerativeClustering
names = sys.argv[1].split(','); R = int(sys.argv[2]); ntrial = int(sys.argv[3]) if len(sys.argv) > 3 else 30
pool = []
for name in names:
    for f in sorted(glob.glob(f'/tmp/accprobe/codes/{name}/s*.npz')):
        d = np.load(f); z = d['z'].astype(np.float64); s = int(f.split('/s')[-1][:-4])
        g = GaussianMixture(10, covariance_type='diag', random_state=s, n_init=10, reg_covar=1e-4, max_iter=200).fit(z)
        pool.append(dict(lab=g.predict(z), acc=float(d['acc_model']), y=d['y'], z=z, name=f'{name}/{s}'))
y = pool[0]['y']; P = len(pool)
A = np.array([[ari(a['lab'], b['lab']) for b in pool] for a in pool])
cent = (A.sum(1) - 1) / (P - 1)
from scipy.stats import spearmanr
print('pool', P, 'acc mean %.3f' % np.mean([p['acc'] for p in pool]), 'spearman(centrality, acc) %+.2f' % spearmanr(cent, [p['acc'] for p in pool]).correlation)
rng = np.random.default_rng(0); sel, cons, avg = [], [], []
for t in range(ntrial):
    idx = rng.choice(P, R, replace=False)
    sub = A[np.ix_(idx, idx)]; c = (sub.sum(1) - 1) / (R - 1)
    best = idx[np.argmax(c)]; sel.append(pool[best]['acc']); avg.append(np.mean([pool[i]['acc'] for i in idx]))
    if t < 10:
        C = np.mean([p['lab'][:, None] == p['lab'][None, :] for p in (pool[i] for i in idx)], axis=0)
        lab = AgglomerativeClustering(10, metric='precomputed', linkage='average').fit_predict(1 - C)
        cons.append(acc(y, lab))
print(f'R={R}: random member mean {np.mean(avg):.3f}; central member mean {np.mean(sel):.3f} min {np.min(sel):.3f}; co-assoc avg-link (first 10) mean {np.mean(cons):.3f} min {np.min(cons):.3f}')
