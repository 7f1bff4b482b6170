"""Fashion-MNIST: how good is the partition that the t-SNE start hands to the model?

Usage: fm_tsne_ceiling.py RUN_DIR SEED NPTS [SUBSET_SEED]

RUN_DIR is a benchmark run of the AE + GMM baseline (experiments/runs/benchmark/ae-gmm-fashion-mnist-seedS,
the same autoencoder pretraining as VaDE's seed S). The codes of all 70000 images are embedded as
``gmm_assign=tsne`` does (NPTS random codes drawn with SUBSET_SEED, default SEED; t-SNE and the GMM's
10 starts seeded by SUBSET_SEED, kept by silhouette). Prints the acc of the t-SNE labels on the subset,
and on all 70000 codes the acc of the diagonal Gaussians that the model gets (diag_all), of full
Gaussians (full_all), and of 15-nearest-neighbour propagation of the labels (knn15_all).
"""
import sys, time, json, numpy as np, torch
from pyro_mixvae.runs import load_run
from pyro_mixvae.data import load_dataset
from pyro_mixvae.infer.pretrain import encode_means, _tsne_responsibilities
from pyro_mixvae.metrics import acc
from scipy.stats import multivariate_normal as mvn
from sklearn.neighbors import KNeighborsClassifier
run, seed, npts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
run_seed = int(sys.argv[4]) if len(sys.argv) > 4 else seed
m, cfg = load_run(run)
d = load_dataset('fashion-mnist'); x = torch.as_tensor(d.x); y = np.asarray(d.y)
with torch.no_grad():
    z = encode_means(m.encoder, x).numpy().astype(np.float64)

idx = np.random.default_rng(run_seed).choice(len(z), npts, replace=False)
t = time.time()
resp = _tsne_responsibilities(z[idx], 10, run_seed, 10, 1e-4)
lab = resp.argmax(1)
out = dict(seed=seed, run_seed=run_seed, npts=npts, t_tsne=round(time.time() - t, 1), tsne_subset=acc(y[idx], lab))
for cov in ('diag', 'full'):
    ll = []
    for k in range(10):
        zk = z[idx][lab == k]; mu = zk.mean(0)
        C = np.diag(zk.var(0) + 1e-4) if cov == 'diag' else np.cov(zk.T) + 1e-4 * np.eye(z.shape[1])
        ll.append(np.log((lab == k).mean()) + mvn(mu, C).logpdf(z))
    out[cov + '_all'] = acc(y, np.argmax(ll, 0))
out['knn15_all'] = acc(y, KNeighborsClassifier(15).fit(z[idx], lab).predict(z))
print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}), flush=True)
