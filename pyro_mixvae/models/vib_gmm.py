"""VIB-GMM: the variational information bottleneck with a Gaussian mixture prior (``vib-gmm.txt``).

Generative story (Sect. 3.2, eq. 11-12; the paper's P and Q swap the usual roles of p and q)::

    c ~ Cat(pi)                        # Q_psi(c), pi on the simplex through its logits
    u | c ~ N(mu_c, diag Sigma_c)      # Q_psi(u | c), eq. 12
    x | u ~ Q_phi(x | u)               # the decoder g_phi: Bernoulli (cross-entropy) or Gaussian

and the amortized encoder P_theta(u | x) = N(mu_theta(x), Sigma_theta(x)) (eq. 11) is the guide.
As a Pyro program this is VaDE's (:mod:`.vade`), with ``u`` at the site ``z``; what differs is
the objective and its schedule:

* the cost of eq. 14-16, ``-E[log Q(x|u)] + s * D_vKL``, with D_vKL the Hershey-Olsen
  approximation of eq. 17-18 (:class:`~pyro_mixvae.infer.elbo.InformationBottleneckELBO`,
  computed from the traces);
* ``s`` annealed as in Algorithm 2: from ``s_min``, multiplied by ``1 + s_step`` every
  ``s_every`` epochs, held at ``s_max`` (:class:`~pyro_mixvae.infer.schedules.GeometricSchedule`);
* the assignment of eq. 19 at the encoder mean, p(c | x) = pi_c N(mu_theta(x); mu_c, Sigma_c) / sum;
* pretraining: the paper reports no pretraining (Sect. 4.3, "we do not use any pretrained
  values"); without it training stalled on digits, so the default is VaDE's autoencoder and
  mixture start, here for 20 epochs, and ``--pretrain-epochs 0`` gives the paper's setting.

Defaults (chosen on digits, ``docs/studies/vib_gmm_tuning.md``): 20 pretraining epochs (the
DEC-sized autoencoder overfits the 1797 digits when trained longer), then s from 0.1 to 1, x1.1
every 2 epochs (s = 1 from epoch 51 on), 150 epochs; on fewer than 10,000 points 80 epochs, where the
training bound has stopped rising (``docs/studies/main_job.md``). The paper's MNIST setting (s from 1 to 5,
every 500 epochs) is ``--set s_min=1 --set s_max=5 --set s_every=500``.
"""
from __future__ import annotations

from ..infer.elbo import KL_ESTIMATORS, InformationBottleneckELBO
from ..infer.schedules import GeometricSchedule
from .base import DEFAULT_CLUSTERS, Setting, non_negative, one_of, positive
from .vade import VaDE


def _at_least_one(value):
    return None if value >= 1 else "must be >= 1"


class VIBGMM(VaDE):
    """VIB-GMM as a Pyro model/guide pair (VaDE's programs) trained on the annealed VIB cost."""

    name = "vib-gmm"
    train_defaults = {"epochs": 150, "pretrain_epochs": 20}
    small_data_defaults = {"epochs": 80}
    settings = {
        **{k: v for k, v in VaDE.settings.items() if k != "s"},
        "s_min": Setting(float, 0.1, "first value of s, the weight of D_vKL (Algorithm 2)", positive),
        "s_max": Setting(float, 1.0, "largest value of s; it is held there", positive),
        "s_step": Setting(float, 0.1, "epsilon of Algorithm 2: s <- (1 + epsilon) s", non_negative),
        "s_every": Setting(int, 2, "epochs between two multiplications of s", _at_least_one),
        "kl": Setting(str, "hershey-olsen", "hershey-olsen (eq. 17-18) or sampled (the s-VaDE bound, eq. 9)",
                      one_of(KL_ESTIMATORS)),
    }

    def __init__(self, data_shape, n_clusters: int = DEFAULT_CLUSTERS, likelihood: str = "bernoulli", **settings):
        super().__init__(data_shape, n_clusters, likelihood, **settings)
        # checked here (not per setting) because it relates two settings; builds the schedule once
        self._schedule = GeometricSchedule("s", self.hparams["s_min"], self.hparams["s_max"],
                                           self.hparams["s_step"], self.hparams["s_every"])

    def make_elbo(self, num_particles: int = 1):
        return InformationBottleneckELBO(s=self.hparams["s_min"], kl=self.hparams["kl"],
                                         max_plate_nesting=self.max_plate_nesting, num_particles=num_particles,
                                         vectorize_particles=True)

    def schedules(self) -> list:
        return [self._schedule] + self.hold_schedules()
