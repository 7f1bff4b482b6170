"""AE codes of VaDE's pretraining on digits -> clusterings; acc of each. Usage: tsne_probe.py SEED

Saves the codes to /tmp/n2d/z_digits_sSEED.npy for tsne_variance.py and tsne_moments.py."""
import sys, time, json, numpy as np, torch
from pyro_mixvae.data import load_dataset
from pyro_mixvae.models import build
from pyro_mixvae.infer.train import seed_everything
from pyro_mixvae.infer.pretrain import pretrain_autoencoder, encode_means
from pyro_mixvae.metrics import acc
from sklearn.mixture import GaussianMixture
from sklearn.manifold import TSNE, SpectralEmbedding
seed = int(sys.argv[1])
d = load_dataset('digits'); x = torch.as_tensor(d.x); y = d.y
seed_everything(seed)
m = build('vade', x.shape[1:], 10, 'bernoulli')
seed_everything(seed)
t0 = time.time()
pretrain_autoencoder(m.encoder, m.decoder, m.likelihood, x, epochs=50, batch_size=100, seed=seed)
z = encode_means(m.encoder, x).numpy().astype(np.float64)
np.save(f'/tmp/n2d/z_digits_s{seed}.npy', z)
t_ae = time.time() - t0
out = dict(seed=seed, t_ae=round(t_ae, 1))
g = lambda e: GaussianMixture(10, covariance_type='full', n_init=10, random_state=seed).fit(e).predict(e)
out['gmm_diag'] = acc(y, GaussianMixture(10, covariance_type='diag', n_init=10, random_state=seed).fit(z).predict(z))
for nc in (2, 3):
    t = time.time(); e = TSNE(nc, random_state=seed, init='pca').fit_transform(z)
    out[f'tsne{nc}_gmm'] = acc(y, g(e)); out[f't_tsne{nc}'] = round(time.time() - t, 1)
for k in (10, 20):
    e = SpectralEmbedding(10, affinity='nearest_neighbors', n_neighbors=k, random_state=seed).fit_transform(z)
    out[f'se{k}_gmm'] = acc(y, g(e))
print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}), flush=True)
