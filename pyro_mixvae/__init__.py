"""pyro_mixvae: deep generative clustering with mixture-prior VAEs written as Pyro programs.

* :mod:`pyro_mixvae.models` — the generative stories (VaDE, GMVAE, VIB-GMM, the factorial prior), each a Pyro model/guide pair;
* :mod:`pyro_mixvae.infer` — the shared SVI loop, pretraining, checkpoints;
* :mod:`pyro_mixvae.data`, :mod:`pyro_mixvae.metrics`, :mod:`pyro_mixvae.evaluation`;
* :class:`VaDE`, :class:`GMVAE`, :class:`VIBGMM`, :class:`FactorialMixtureVAE` — the scikit-learn style estimators (``fit``, ``predict``, ``predict_proba``, ...).
"""
__version__ = "0.1.0"

from .estimator import GMVAE, VIBGMM, FactorialMixtureVAE, VaDE  # noqa: E402

__all__ = ["FactorialMixtureVAE", "GMVAE", "VIBGMM", "VaDE", "__version__"]
