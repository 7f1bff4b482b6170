"""Train the AE for one variant/seed, save codes + recon to npz. Usage: ae.py NAME SEED [key=val ...]"""
import sys, json, time, os
import numpy as np, torch
import pyro_mixvae
assert pyro_mixvae.__file__.startswith('/work/wt-acc'), pyro_mixvae.__file__
from pyro_mixvae.data import load_dataset
from pyro_mixvae.models import build
from pyro_mixvae.infer.train import seed_everything, predict_proba
from pyro_mixvae.infer.pretrain import pretrain_autoencoder, encode_means
from pyro_mixvae.metrics import acc

name, seed = sys.argv[1], int(sys.argv[2])
kw = dict(a.split('=') for a in sys.argv[3:])
epochs = int(kw.pop('epochs', 20)); bs = int(kw.pop('bs', 100))
ae = dict(lr=float(kw.pop('lr', 1e-3)), noise=float(kw.pop('noise', 0.0)))
if 'kl' in kw:
    ae.update(vae=True, kl_weight=float(kw.pop('kl')))
wd = float(kw.pop('wd', 0.0)); adamw = 'wd' in sys.argv[3:][0] if sys.argv[3:] else False; adamw = any(a.startswith('wd=') for a in sys.argv[3:])
assert not kw, kw
d = load_dataset('digits'); x = torch.as_tensor(d.x); y = d.y
seed_everything(seed)
m = build('vib-gmm', x.shape[1:], 10, 'bernoulli')
if adamw:
    import pyro_mixvae.infer.pretrain as P
    orig = P.make_optimizer
    P.make_optimizer = lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=wd)
seed_everything(seed)  # as fit() does before pretrain
t0 = time.time()
losses = pretrain_autoencoder(m.encoder, m.decoder, m.likelihood, x, epochs=epochs, batch_size=bs, seed=seed, **ae)
z = encode_means(m.encoder, x).numpy()
m.init_mixture_from_codes(torch.as_tensor(z), seed)
a_model = acc(y, predict_proba(m, x).numpy().argmax(1))
os.makedirs(f'/tmp/accprobe/codes/{name}', exist_ok=True)
np.savez(f'/tmp/accprobe/codes/{name}/s{seed}.npz', z=z, y=y, losses=np.array(losses), acc_model=a_model)
print(json.dumps(dict(name=name, seed=seed, acc_model=round(a_model, 3), recon=round(losses[-1], 3), sec=round(time.time()-t0, 1))))
