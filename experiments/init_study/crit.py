"""Label-free criteria vs start acc across variants/seeds. Usage: crit.py NAME..."""
import sys, glob, numpy as np, warnings; warnings.filterwarnings('ignore')
from scipy.stats import spearmanr
from sklearn.mixture import GaussianMixture
from sklearn.metrics import silhouette_score, calinski_harabasz_score, davies_bouldin_score
def std(z): return (z - z.mean(0)) / z.std(0)
rows = []
for name in sys.argv[1:]:
    for f in sorted(glob.glob(f'/tmp/accprobe/codes/{name}/s*.npz')):
        d = np.load(f); z = d['z'].astype(np.float64); s = int(f.split('/s')[-1][:-4])
        g = GaussianMixture(10, covariance_type='diag', random_state=s, n_init=10, reg_covar=1e-4, max_iter=200).fit(z)
        lab = g.predict(z); zs = std(z)
        gs = GaussianMixture(10, covariance_type='diag', random_state=s, n_init=10, reg_covar=1e-4, max_iter=200).fit(zs)
        post = g.predict_proba(z)
        rows.append(dict(name=name, seed=s, acc=float(d['acc_model']), recon=float(d['losses'][-1]),
                         sil_std=silhouette_score(zs, lab), sil=silhouette_score(z, lab),
                         ch=calinski_harabasz_score(zs, lab), db=-davies_bouldin_score(zs, lab),
                         ll_std=gs.score(zs), ll_raw_logdet=g.score(z) + np.log(z.std(0)).sum(),
                         entropy=-(post*np.log(post+1e-12)).sum(1).mean(),
                         ))
keys = [k for k in rows[0] if k not in ('name', 'seed', 'acc')]
acc = np.array([r['acc'] for r in rows])
for k in keys:
    v = np.array([r[k] for r in rows]); rho = spearmanr(v, acc).correlation
    # within-variant correlation (mean over names)
    w = [spearmanr([r[k] for r in rows if r['name']==n], [r['acc'] for r in rows if r['name']==n]).correlation for n in sys.argv[1:]]
    print(f'{k:14s} spearman all {rho:+.2f} | within ' + ' '.join(f'{x:+.2f}' for x in w))
