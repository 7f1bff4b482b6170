"""Confusion of a VaDE Fashion-MNIST run: each cluster, the class the Hungarian matching gives it, its size and its row of class counts.

Usage: fm_drift.py RUN_DIR (the log is for experiments/runs/benchmark/vade-fashion-mnist-seed3)."""
import sys, numpy as np, torch
from pyro_mixvae.runs import load_run
from pyro_mixvae.data import load_dataset
from pyro_mixvae.metrics import acc
from scipy.optimize import linear_sum_assignment
d = load_dataset('fashion-mnist'); x = torch.as_tensor(d.x); y = np.asarray(d.y)
m, _ = load_run(sys.argv[1])
with torch.no_grad():
    g = torch.cat([m.responsibilities(xb) for xb in x.split(2000)]).numpy()
lab = g.argmax(1)
C = np.zeros((10, 10), int)
np.add.at(C, (lab, y), 1)
r, c = linear_sum_assignment(-C)
print('acc', acc(y, lab))
names = ['tshirt','trouser','pullover','dress','coat','sandal','shirt','sneaker','bag','boot']
for k in np.argsort(c):
    print(f'cluster {k} -> {names[c[k]]:8s} size {C[k].sum():6d} row', C[k])
