import sys, numpy as np, warnings; warnings.filterwarnings('ignore')
sys.path.insert(0,'/work/wt-acc')
from pyro_mixvae.metrics import acc
from sklearn.datasets import load_digits
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
d = load_digits(); x = d.data/16; y = d.target
for s in range(3):
    r = [acc(y, KMeans(10, n_init=10, random_state=s).fit_predict(x)),
         acc(y, SpectralClustering(10, affinity='nearest_neighbors', n_neighbors=10, random_state=s).fit_predict(x)),
         acc(y, GaussianMixture(10, covariance_type='full', n_init=10, random_state=s, reg_covar=1e-3).fit_predict(PCA(10).fit_transform(x)))]
    print(s, ' '.join(f'{a:.3f}' for a in r))
