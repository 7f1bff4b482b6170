"""Pretraining shared by the models: an autoencoder, then a GMM on its codes.

VaDE (``vade.txt``, Sect. 4.2): "we use a Stacked Auto-Encoder to pretrain the networks f and
g. Then all data points are projected into the latent space z by the pretrained network g,
where a GMM is applied to initialize the parameters of {pi, mu_c, sigma_c}". Here the
autoencoder is the model's own encoder mean and decoder, trained end to end on the
reconstruction term -log p(x | z = mu(x)) of the model's likelihood, and the GMM is
scikit-learn's diagonal ``GaussianMixture``, or (the default of VaDE and VIB-GMM) GMMs on a t-SNE
embedding of the codes, from several starts, whose consensus partition gives the diagonal moments
(:func:`fit_diag_gmm`, :func:`consensus_partition`).
"""
from __future__ import annotations

import copy
import warnings
from typing import NamedTuple, Optional

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import SpectralClustering
from sklearn.manifold import TSNE
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import kneighbors_graph
from tqdm.auto import tqdm

from ..errors import NonFiniteLossError
from ..nets import eval_mode
from .train import make_optimizer


def pretrain_autoencoder(encoder, decoder, likelihood, x: torch.Tensor, *, epochs: int, batch_size: int,
                         lr: float, noise: float = 0.0, seed: int = 0, progress: bool = False,
                         vae: bool = False, kl_weight: float = 1.0) -> list:
    """Train ``decoder(encoder(x).loc)`` to reconstruct ``x``; returns the loss per epoch.

    The loss is the mean over points of -log p(x | z = mu(x)): binary cross-entropy for the
    Bernoulli head, the Gaussian negative log-likelihood for the Gaussian head. With
    ``noise`` > 0 the encoder sees its input with that fraction of values dropped to zero
    (a denoising autoencoder, as in DEC's pretraining) and the decoder reconstructs the
    clean input.

    ``vae=True`` trains a VAE with an N(0, I) prior instead (the factorial prior's
    initialisation, ``factorial-mixture-prior.txt`` Sect. 2.4): z ~ q(z|x) by reparameterisation
    and the loss -log p(x | z) + beta_e KL(q(z|x) || N(0, I)), the KL in closed form and its
    weight beta_e annealed linearly from 0 in the first epoch to ``kl_weight`` in the last.
    """
    params = list(encoder.parameters()) + list(decoder.parameters())
    optim = make_optimizer(params, lr)
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    losses = []
    encoder.train()
    decoder.train()
    bar = tqdm(range(epochs), desc="pretrain (autoencoder)", disable=not progress, leave=False)
    for epoch in bar:
        beta = kl_weight * epoch / max(epochs - 1, 1)
        total = torch.zeros((), device=x.device)
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            xb = x[idx.to(x.device)]
            x_in = xb * (torch.rand(xb.shape, generator=gen).to(xb.device) >= noise) if noise > 0 else xb
            loc, scale = encoder(x_in)
            if vae:
                z = loc + scale * torch.randn(loc.shape, generator=gen).to(loc.device)
                kl = 0.5 * (loc ** 2 + scale ** 2 - 1 - 2 * torch.log(scale)).sum(-1)
                loss = (-likelihood(decoder(z)).log_prob(xb) + beta * kl).mean()
            else:
                loss = -likelihood(decoder(loc)).log_prob(xb).mean()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            total += loss.detach() * len(idx)
        losses.append(float(total) / n)
        if not np.isfinite(losses[-1]):
            raise NonFiniteLossError(f"the pretraining loss became {losses[-1]} at pretraining epoch {len(losses)}; "
                                     "try a lower pretrain_lr")
        bar.set_postfix(recon=f"{losses[-1]:.3f}")
    return losses


def pretrain_autoencoders(encoder, decoder, likelihood, x: torch.Tensor, *, autoencoders: int = 1, epochs: int,
                          batch_size: int, seed: int = 0, progress: bool = False, **options):
    """The model's autoencoder (:func:`pretrain_autoencoder`), then ``autoencoders - 1`` more of the same
    networks drawn anew; returns (the model's losses per epoch, the codes mu(x) of each, the model's first).

    The further autoencoders are copies of ``encoder`` and ``decoder`` whose layers are drawn afresh
    from their own seeds (:func:`fresh_copy`; the global random streams are left as they were), trained
    the same way and then dropped: only their codes are kept, for the mixture start
    (:func:`fit_diag_gmm`'s ``others``). The model's own autoencoder is trained first, exactly as
    with ``autoencoders=1``. ``options`` go to :func:`pretrain_autoencoder` (``lr``, ``noise``, ``vae``, ...).
    """
    copies = [fresh_copy((encoder, decoder), member_seed(seed, r)) for r in range(1, autoencoders)]
    losses = pretrain_autoencoder(encoder, decoder, likelihood, x, epochs=epochs, batch_size=batch_size,
                                  seed=seed, progress=progress, **options)
    codes = [encode_means(encoder, x)]
    for r, (enc, dec) in enumerate(copies, 1):
        pretrain_autoencoder(enc, dec, likelihood, x, epochs=epochs, batch_size=batch_size,
                             seed=member_seed(seed, r), progress=progress, **options)
        codes.append(encode_means(enc, x))
    return losses, codes


def pretrain_mixture_start(model, x: torch.Tensor, *, epochs: int, batch_size: int, seed: int,
                           progress: bool = False) -> dict:
    """The pretraining VaDE and GMVAE share (VaDE Sect. 4.2): the model's autoencoder on the reconstruction term
    (and ``start_autoencoders - 1`` more, for their codes), the mixture started from the codes
    (``model.init_mixture_from_codes``, which returns the components' variances (K, D)), q(z | x) started with
    those variances (:func:`init_guide_scale`) and the likelihood's shared variance (:func:`fit_shared_variance`)."""
    hp = model.hparams
    losses, codes = pretrain_autoencoders(model.encoder, model.decoder, model.likelihood, x,
                                          autoencoders=hp["start_autoencoders"], epochs=epochs, batch_size=batch_size,
                                          lr=hp["pretrain_lr"], noise=hp.get("pretrain_noise", 0.0), seed=seed,
                                          progress=progress)
    units = getattr(model.likelihood, "units", None)  # the data as the networks see them (standardised if Gaussian)
    with torch.no_grad():
        seen = units(x) if units is not None else x
    variances = model.init_mixture_from_codes(codes[0], seed, progress, others=codes[1:], data=seen)
    init_guide_scale(model.encoder, variances)
    fit_shared_variance(model.encoder, model.decoder, model.likelihood, x, seed=seed)
    proposal = getattr(model, "start_proposal", None)  # a --clusters auto start: (K', what proposed it)
    return {"pretrain_recon": losses[-1] if losses else None,
            **({"start_clusters": proposal[0], "start_clusters_by": proposal[1]} if proposal else {})}


def model_start(model, z: torch.Tensor, seed: int, progress: bool, others=(), data=None) -> MixtureStart:
    """:func:`fit_diag_gmm` on the codes ``z`` with a model's start settings (``gmm_restarts``,
    ``consensus_starts``, ``gmm_assign``, ``start_embeddings``): what VaDE's and GMVAE's
    ``init_mixture_from_codes`` set their mixtures from. With ``start_clusters="auto"`` (``mixvae fit --clusters
    auto``) the start fills only the K' <= K components that :func:`proposed_clusters` proposes, the others
    start empty (:func:`padded_start`); ``model.start_proposal`` records (K', what proposed it)."""
    hp = model.hparams
    codes, points = z.cpu().numpy(), None if data is None else data.cpu().numpy()
    k = model.n_clusters
    if hp.get("start_clusters", "all") == "auto":
        model.start_proposal = proposed_clusters(codes, points, k, seed)
        k = max(model.start_proposal[0], model.min_clusters)
    start = fit_diag_gmm(codes, k, seed, n_init=hp["gmm_restarts"], assign=hp["gmm_assign"],
                         progress=progress, others=[c.cpu().numpy() for c in others],
                         data=points, embeddings=hp["start_embeddings"],
                         consensus_init=hp["consensus_starts"])
    return padded_start(start, codes, model.n_clusters)


def member_seed(seed: int, member: int) -> int:
    """The seed of the ``member``-th further autoencoder of a run with ``seed``: a stream of its own
    (``numpy.random.SeedSequence([seed, member])``), not the seed of another run."""
    return int(np.random.SeedSequence([int(seed), int(member)]).generate_state(1)[0])


def fresh_copy(modules, seed: int) -> tuple:
    """Deep copies of ``modules`` with every layer's parameters drawn anew (``reset_parameters``) from
    ``seed``, under a forked random stream; parameters outside such layers (a shared variance) are copied."""
    copies = tuple(copy.deepcopy(m) for m in modules)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in copies:
            for layer in module.modules():
                if layer is not module and hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
    return copies


@torch.no_grad()
def fit_shared_variance(encoder, decoder, likelihood, x: torch.Tensor, batch_size: int = 1000, seed: int = 0) -> None:
    """``gaussian-shared``: set sigma_x^2 to the mean squared residual of each value,
    (1/N) sum_n (x_n - mu_x(z_n))^2 with z_n ~ q(z | x_n), the maximum-likelihood variance given
    the decoder's means and the guide as SVI finds them (the parameter holds it in the networks'
    units: divided by the likelihood's ``units.scale`` squared). (No-op for other likelihoods.)

    Called where pretraining hands over to SVI: the pretraining leaves this one parameter per
    value near its start, and Adam moves a parameter by about the learning rate per step, so on a
    small data set SVI would spend its few hundred steps at a variance near the data's own, at
    which the codes explain little.
    """
    if getattr(decoder, "log_var", None) is None:
        return
    gen = torch.Generator().manual_seed(seed)
    squared = torch.zeros_like(decoder.log_var)
    with eval_mode(encoder), eval_mode(decoder):
        for xb in x.split(batch_size):
            loc, scale = encoder(xb)
            z = loc + scale * torch.randn(loc.shape, generator=gen).to(loc)
            squared += ((xb - likelihood.mean(decoder(z))) ** 2).sum(0)
    log_var = torch.log(squared / x.shape[0] + torch.finfo(x.dtype).tiny) - 2 * torch.log(likelihood.units.scale)
    decoder.log_var.copy_(log_var.clamp(*likelihood.LOG_VAR_RANGE))


@torch.no_grad()
def encode_means(encoder, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Encoder means mu(x) for all of ``x``, in evaluation mode, batch by batch."""
    with eval_mode(encoder):
        return torch.cat([encoder(xb)[0] for xb in x.split(batch_size)])


@torch.no_grad()
def init_guide_scale(encoder, component_variances: torch.Tensor) -> None:
    """Start q(z | x) no wider than the narrowest mixture component: sigma~^2(x) = min_c sigma_c^2, for every x.

    The autoencoder trains only the encoder's mean, so its log-variance head is still at its
    random start (sigma~ near 1) when SVI begins, however tight the components fitted on the
    codes are. By the law of total variance the posterior of z given x is on average no wider
    than the prior component it belongs to, E[Var(z | x, c)] <= sigma_c^2; the narrowest
    component bounds that for every point whichever component it belongs to (a start that merges
    two groups into one wide component must not widen q for the others). The head's weights are
    zeroed and its bias set to the per-dimension minimum of log sigma_c^2 over components
    (``encoder.log_var``, a linear layer, emits log sigma~^2, VaDE eq. 10).
    """
    head = encoder.log_var
    head.weight.zero_()
    head.bias.copy_(torch.log(component_variances.min(0).values).to(head.bias))


GMM_FITS = ("auto", "diag", "full", "tsne", "tsne-data", "data", "graph")
# assign="tsne": the embedding is fitted on at most this many codes (a random subset beyond it);
# the initialisation needs only each component's moments, which a subset estimates well
TSNE_MAX_POINTS = 5000
TSNE_DIM = 3
# assign="auto": a t-SNE start (of the data or of the codes: TSNE_DATA_MAX_DIM) when the clusters hold, on
# average, at least this many times t-SNE's perplexity (its neighbourhoods span about 3 x perplexity points);
# else the GMM on the codes
TSNE_MIN_POINTS_PER_PERPLEXITY = 3
TSNE_PERPLEXITY = 30.0
# gradient-descent iterations of the embedding (scikit-learn's default: 1000); over 20 default runs on digits
# 500 were as good or better (docs/studies/stability.md) at half the embedding's time
TSNE_ITERATIONS = 500
# assign="auto": the data themselves are embedded (tsne-data) only up to this many dimensions; above it t-SNE's
# distances between raw features are poor neighbourhoods (scikit-learn's TSNE recommends reducing such data to
# about 50 dimensions first), and the codes are embedded instead: on 5,000 Fashion-MNIST images (784 pixels)
# the data's embedding ended 0.03-0.04 below the codes' (docs/studies/stability.md)
TSNE_DATA_MAX_DIM = 100
# assign="graph" (and "auto" first, on data of at most TSNE_DATA_MAX_DIM dimensions and GRAPH_MAX_POINTS points):
# the data's symmetric GRAPH_NEIGHBOURS-nearest-neighbour graph; its connected components are the start when
# there are exactly K of them (scikit-learn's SpectralClustering uses 10 neighbours too)
GRAPH_NEIGHBOURS = 10
GRAPH_MAX_POINTS = 20_000
# ... and when the smallest component holds at least this share of the mean group size N / K: a small island of
# outlying points is not a group
GRAPH_MIN_SHARE = 0.1
# assign="data": the covariance types a GMM on the data is fitted with, the one of least BIC kept
DATA_COVARIANCES = ("full", "tied", "diag", "spherical")
# start_clusters="auto" (mixvae fit --clusters auto): the GMMs whose BIC proposes K' are fitted on at most this
# many points (a random subset beyond it)
BIC_MAX_POINTS = 5000


def resolve_gmm_fit(assign: str, n_points: int, n_clusters: int, data_dim: Optional[int] = None,
                    code_dim: Optional[int] = None) -> str:
    """``auto`` -> a t-SNE start when N / K >= TSNE_MIN_POINTS_PER_PERPLEXITY * TSNE_PERPLEXITY (90 points per
    cluster), else a GMM on the data (``data``, where they have at most ``TSNE_DATA_MAX_DIM`` dimensions) or on
    the codes (``diag``); any other value unchanged. The t-SNE start embeds the data (``tsne-data``) when
    they have more dimensions than the codes and at most ``TSNE_DATA_MAX_DIM``, else the codes (``tsne``: on a
    table of two or three columns the codes are the richer of the two; on images of hundreds of pixels the
    codes are the better neighbourhoods). (``auto`` tries the data's graph before these:
    :func:`graph_components`, in :func:`fit_diag_gmm`.)

    t-SNE's affinities reach about 3 x perplexity neighbours of every point; a cluster smaller than
    that shares its neighbourhoods with others, and the embedding can split or merge it
    (``docs/studies/robustness.md``).
    """
    if assign != "auto":
        return assign
    table = data_dim is not None and data_dim <= TSNE_DATA_MAX_DIM
    if n_points < TSNE_MIN_POINTS_PER_PERPLEXITY * TSNE_PERPLEXITY * n_clusters:
        return "data" if table else "diag"
    if table and code_dim is not None and code_dim < data_dim:
        return "tsne-data"
    return "tsne"


GMM_SELECTS = ("auto", "consensus", "silhouette", "likelihood", "agreement")


class MixtureStart(NamedTuple):
    """A mixture start on N codes: the components' diagonal moments and the responsibilities that decided them."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, J), in the codes' units
    variances: np.ndarray  # (K, J)
    # (N, K): the decision's responsibilities of each code (the consensus's labels one-hot, or the kept GMM's
    # posterior in its space); rows of NaN for codes left out of a t-SNE subset. None when the start is a
    # diagonal GMM on the codes themselves: its responsibilities are then the moments' own posterior
    responsibilities: Optional[np.ndarray]


def fit_diag_gmm(z: np.ndarray, n_clusters: int, seed: int = 0, n_init: int = 1, assign: str = "diag",
                 progress: bool = False, select: str = "auto", others=(), data=None,
                 embeddings: int = 1, consensus_init: Optional[int] = None) -> MixtureStart:
    """Diagonal GMM on the codes ``z``; returns a :class:`MixtureStart` (weights, means, variances, responsibilities).

    ``assign="diag"`` (this function's default) is scikit-learn's diagonal ``GaussianMixture`` on ``z``.
    ``assign="full"``: a full-covariance GMM on the standardised codes decides the responsibilities (the codes'
    clusters are tilted ellipsoids), their diagonal moments in the codes' units (``docs/studies/vib_gmm_tuning.md``).
    ``assign="tsne"``: a full-covariance GMM on a t-SNE embedding of the codes (``TSNE_DIM`` dimensions;
    scikit-learn's Barnes-Hut) decides, the moments as for ``"full"``: N2D's observation (McConville et al., 2020)
    that a manifold learner on the codes separates the clusters that a GMM on them merges; beyond
    ``TSNE_MAX_POINTS`` codes, on a random subset (``docs/studies/tsne_init.md``). ``assign="tsne-data"``: the same
    on ``embeddings`` embeddings (t-SNE seeds s, s + 1, ...) of the ``data`` themselves (the points the codes
    encode), so that the decision does not hang on one autoencoder's draw. ``assign="data"``: a GMM on the ``data``,
    its covariance type chosen by BIC (:func:`_data_start`); ``"graph"``: the components of the data's neighbourhood
    graph (:func:`_graph_start`). ``"auto"`` (the models' default): ``"graph"`` where it finds K groups, else
    :func:`resolve_gmm_fit`'s choice from the data's size and dimension.

    Whichever GMM decides, it is fitted from ``n_init`` single starts (k-means initialisations drawn
    from ``seed``). ``select="consensus"`` keeps none of them alone: the start is the partition that
    the starts agree on (:func:`consensus_partition`), fitted ``n_init`` times in each space (each
    autoencoder's codes, ``others`` below; for ``"tsne-data"`` ``consensus_init`` times in each embedding). The other rules keep one start
    (:func:`choose_start`): ``"silhouette"`` the best silhouette of its hard labels, ``"likelihood"``
    the best log-likelihood (VaDE Sect. 4.3's "best objective value"), ``"agreement"`` the start
    whose partition agrees best with the others'. ``"auto"`` is the consensus on t-SNE embeddings
    or with further autoencoders' codes, else the likelihood (``docs/studies/stability.md``).
    ``others``: further autoencoders' codes of the same points (:func:`pretrain_autoencoders`), each in its own
    space under the consensus, else side by side (:func:`side_by_side`). ``progress``: a bar over the stages.
    """
    _check_choice("assign", assign, GMM_FITS)
    _check_choice("select", select, GMM_SELECTS)
    z = np.asarray(z, dtype=np.float64)
    data_dim = None if data is None else int(np.prod(np.shape(data)[1:]))
    start = _graph_start(z, data, n_clusters, assign)
    if start is not None:
        return start
    assign = resolve_gmm_fit(assign, len(z), n_clusters, data_dim, z.shape[1])
    if assign == "data":
        return _data_start(z, data, n_clusters, "likelihood" if select == "auto" else select, seed, n_init, progress)
    data_embedded = assign == "tsne-data"
    (codes, assign), points, reg = _decision_spaces(z, others, data, assign, embeddings), np.arange(len(z)), 1e-4
    if assign == "tsne" and len(z) > TSNE_MAX_POINTS:
        points = np.sort(np.random.default_rng(seed).choice(len(z), TSNE_MAX_POINTS, replace=False))
        codes = [c[points] for c in codes]
    if select == "auto":
        select = "consensus" if assign == "tsne" or len(codes) > 1 else "likelihood"
    spaces = len(codes) if select == "consensus" else 1
    if data_embedded and select == "consensus" and consensus_init is not None:
        n_init = consensus_init
    with tqdm(total=spaces * (n_init + (assign == "tsne")), desc="mixture start", unit="stage",
              disable=not progress, leave=False) as bar:
        if select == "consensus":
            resp = _consensus_responsibilities(codes, n_clusters, assign, seed, n_init, reg, bar)
        else:
            gmm, resp = _kept_start(codes, n_clusters, assign, select, seed, n_init, reg, bar)
            if assign == "diag" and not len(others):  # the GMM on the codes is the start, moments and all
                return MixtureStart(gmm.weights_, gmm.means_, gmm.covariances_, None)
    decided = np.full((len(z), n_clusters), np.nan)
    decided[points] = resp
    return MixtureStart(*diagonal_moments(resp, z[points], reg), decided)


def _decision_spaces(z: np.ndarray, others, data, assign: str, embeddings: int):
    """(the spaces whose GMM starts decide the start, the fit that decides in them): the codes and further
    autoencoders' codes; for ``tsne-data``, ``embeddings`` copies of the data (each embedded with its own seed)."""
    if assign != "tsne-data":
        return [z, *(np.asarray(c, dtype=np.float64) for c in others)], assign
    if data is None:
        raise ValueError("assign='tsne-data' needs the data (the points that the codes encode)")
    return [np.asarray(data, dtype=np.float64).reshape(len(z), -1)] * int(embeddings), "tsne"


def _data_start(z: np.ndarray, data, n_clusters: int, select: str, seed: int, n_init: int,
                progress: bool) -> MixtureStart:
    """The start decided by a GMM on the standardised ``data`` (the points that the codes encode, flattened),
    its covariance type the one of least BIC (:func:`data_covariance`), the start ``select`` keeps of
    ``n_init``; its responsibilities' diagonal moments in the codes ``z``: on a table of few columns and
    points, what a data scientist fits first (``docs/studies/stability.md``)."""
    if data is None:
        raise ValueError("assign='data' needs the data (the points that the codes encode)")
    data = standardised(np.asarray(data, dtype=np.float64).reshape(len(z), -1))
    reg = 1e-4
    with tqdm(total=n_init * (len(DATA_COVARIANCES) + 1), desc="mixture start", unit="stage", disable=not progress,
              leave=False) as bar:
        covariance = data_covariance(data, n_clusters, seed, n_init, reg, bar)
        gmm = choose_start(data, n_clusters, covariance, reg, seed, n_init, select, bar)
    resp = gmm.predict_proba(data)
    return MixtureStart(*diagonal_moments(resp, z, reg), resp)


def standardised(x: np.ndarray) -> np.ndarray:
    """Each column centred and divided by its standard deviation (constant columns left at 0)."""
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)


def data_covariance(x: np.ndarray, n_clusters: int, seed: int, n_init: int, reg: float, bar=None) -> str:
    """The covariance type of ``DATA_COVARIANCES`` whose GMM on ``x`` (the best likelihood of ``n_init``
    k-means starts) has the least Bayesian information criterion, -2 log p(x | theta) + (free parameters) log N
    (Schwarz, 1978; scikit-learn's ``GaussianMixture.bic``): full covariances where the points are enough to
    pay for them, fewer parameters where they are not (50 points a group in 20 dimensions)."""
    def bic(covariance):
        score = gmm_bic(x, n_clusters, covariance, seed, reg, n_init)
        if bar is not None:
            bar.update(n_init)
        return score
    return min(DATA_COVARIANCES, key=bic)


def gmm_bic(x: np.ndarray, n_clusters: int, covariance: str, seed: int, reg: float, n_init: int = 1) -> float:
    """The BIC of the GMM on ``x`` (the best likelihood of ``n_init`` k-means starts drawn from ``seed``)."""
    return GaussianMixture(n_components=n_clusters, covariance_type=covariance, random_state=seed, n_init=n_init,
                           reg_covar=reg, max_iter=200).fit(x).bic(x)


def bic_clusters(x: np.ndarray, max_clusters: int, seed: int, reg: float = 1e-4) -> tuple:
    """(K', covariance type) of the GMM on ``x`` of least Bayesian information criterion (:func:`data_covariance`'s)
    over K' = 1 .. ``max_clusters`` and every type of ``DATA_COVARIANCES``, each GMM from one k-means start
    drawn from ``seed``: the number of Gaussian groups the points pay for (Fraley & Raftery, 1998)."""
    scores = {(k, covariance): gmm_bic(x, k, covariance, seed, reg)
              for covariance in DATA_COVARIANCES for k in range(1, max_clusters + 1)}
    return min(scores, key=scores.get)


def proposed_clusters(z: np.ndarray, data, max_clusters: int, seed: int) -> tuple:
    """(K' <= ``max_clusters``, what proposed it): the groups a ``--clusters auto`` start fills.

    1. ``"data BIC"``: :func:`bic_clusters` on the standardised data, where they have at most
       ``TSNE_DATA_MAX_DIM`` dimensions and the least BIC lies below ``max_clusters``: Gaussian groups that the
       points pay for. A least BIC at ``max_clusters`` says that no K' up to it describes the data as Gaussian
       groups (digits' pixels, arcs), and the next reading is taken.
    2. ``"graph"``: the connected components of the data's neighbourhood graph (:func:`graph_components`), where
       there are several and none an island (:data:`GRAPH_MIN_SHARE`): groups apart, whatever their shape.
    3. ``"codes BIC"``: :func:`bic_clusters` on the standardised codes, the space of the model's own mixture.
    The GMMs see at most ``BIC_MAX_POINTS`` points (a random subset drawn from ``seed`` beyond it).
    """
    rng = np.random.default_rng(seed)

    def subset(x):
        x = standardised(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
        return x[np.sort(rng.choice(len(x), BIC_MAX_POINTS, replace=False))] if len(x) > BIC_MAX_POINTS else x

    table = data is not None and int(np.prod(np.shape(data)[1:])) <= TSNE_DATA_MAX_DIM
    if table:
        k, _ = bic_clusters(subset(data), max_clusters, seed)
        if k < max_clusters:
            return k, "data BIC"
        if len(data) <= GRAPH_MAX_POINTS:
            count, labels = graph_components(data)
            if 1 < count <= max_clusters and np.bincount(labels).min() >= GRAPH_MIN_SHARE * len(labels) / count:
                return int(count), "graph"
    return bic_clusters(subset(z), max_clusters, seed)[0], "codes BIC"


def padded_start(start: MixtureStart, z: np.ndarray, n_clusters: int) -> MixtureStart:
    """``start`` extended to ``n_clusters`` components by empty ones: weight 0, the codes' overall mean and
    variance, no responsibility; unchanged when it has them all already."""
    missing = n_clusters - len(start.weights)
    if missing <= 0:
        return start
    z = np.asarray(z, dtype=np.float64)
    resp = start.responsibilities
    if resp is not None:
        resp = np.concatenate([resp, np.where(np.isnan(resp[:, :1]), np.nan, 0.0).repeat(missing, 1)], axis=1)
    return MixtureStart(np.concatenate([start.weights, np.zeros(missing)]),
                        np.concatenate([start.means, np.tile(z.mean(0), (missing, 1))]),
                        np.concatenate([start.variances, np.tile(z.var(0) + 1e-4, (missing, 1))]), resp)


def neighbour_graph(data):
    """The symmetric ``GRAPH_NEIGHBOURS``-nearest-neighbour graph of the standardised ``data`` (flattened), as a
    sparse affinity matrix: 1 where each of n and m is among the other's nearest neighbours, 1/2 where one is."""
    x = standardised(np.asarray(data, dtype=np.float64).reshape(len(data), -1))
    graph = kneighbors_graph(x, min(GRAPH_NEIGHBOURS, len(x) - 1), include_self=False)
    return 0.5 * (graph + graph.T)


def graph_components(data) -> tuple:
    """(number of connected components, their labels) of the data's :func:`neighbour_graph`: an edge joins n
    and m when either is among the other's nearest neighbours."""
    return connected_components(neighbour_graph(data), directed=False)


def _graph_start(z: np.ndarray, data, n_clusters: int, assign: str) -> Optional[MixtureStart]:
    """For ``assign="graph"``, or ``"auto"`` on data of at most ``TSNE_DATA_MAX_DIM`` dimensions and
    ``GRAPH_MAX_POINTS`` points: the start whose groups are the connected components of the data's neighbourhood
    graph (:func:`graph_components`), when there are exactly ``n_clusters`` of them: groups that no point's
    neighbourhood joins, whatever their shape (arcs curled round each other, which a GMM on the points cuts
    across), deterministic, with no draw to lose. None when there are not, or when one of them is an island of
    fewer than ``GRAPH_MIN_SHARE`` x N / K points (for ``"graph"``: a ``ValueError``), or for another ``assign``."""
    if assign == "auto":
        if data is None or int(np.prod(np.shape(data)[1:])) > TSNE_DATA_MAX_DIM or len(z) > GRAPH_MAX_POINTS:
            return None
    elif assign != "graph":
        return None
    elif data is None:
        raise ValueError("assign='graph' needs the data (the points that the codes encode)")
    count, labels = graph_components(data)
    smallest = int(np.bincount(labels).min())
    if count != n_clusters or smallest < GRAPH_MIN_SHARE * len(labels) / n_clusters:
        if assign == "graph":
            raise ValueError(f"assign='graph': the data's {GRAPH_NEIGHBOURS}-nearest-neighbour graph has {count} "
                             f"connected components (the smallest of {smallest} points), not {n_clusters} groups "
                             f"of at least {GRAPH_MIN_SHARE:g} x N / K; choose another gmm_assign")
        return None
    resp = np.eye(n_clusters)[labels]
    return MixtureStart(*diagonal_moments(resp, z, 1e-4), resp)


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def _consensus_responsibilities(codes, n_clusters: int, assign: str, seed: int, n_init: int, reg: float, bar):
    """One-hot labels of :func:`consensus_partition` over ``n_init`` GMM starts in each space (an autoencoder's
    codes, or an embedding of the data)."""
    partitions = []
    for r, c in enumerate(codes):
        space, covariance, reg_space = _decision_space(assign, c, seed + r, reg, bar)
        bar.set_description(f"mixture start: {n_init} GMM starts, space {r + 1} of {len(codes)}")
        partitions += gmm_partitions(space, n_clusters, covariance, reg_space, seed + r, n_init, bar)
    return np.eye(n_clusters)[consensus_partition(partitions, n_clusters)]


def _kept_start(codes, n_clusters: int, assign: str, select: str, seed: int, n_init: int, reg: float, bar):
    """(the GMM that ``select`` keeps of ``n_init`` on the codes side by side, its responsibilities there)."""
    space, covariance, reg_space = _decision_space(assign, side_by_side(codes) if len(codes) > 1 else codes[0],
                                                   seed, reg, bar)
    bar.set_description(f"mixture start: {n_init} GMM starts" + (" on the embedding" if assign == "tsne" else ""))
    gmm = choose_start(space, n_clusters, covariance, reg_space, seed, n_init, select, bar)
    return gmm, gmm.predict_proba(space)


def _decision_space(assign: str, joint: np.ndarray, seed: int, reg: float, bar):
    """(the points the GMM is fitted on, its covariance type, its regulariser) for ``assign``: the t-SNE
    embedding of the codes, the standardised codes, or the codes as they are."""
    if assign == "tsne":
        bar.set_description(f"mixture start: t-SNE of {len(joint)} points")
        space = tsne_embedding(joint, seed)
        bar.update()
        return space, "full", reg * float(space.var())  # the regulariser relative to the embedding's scale
    if assign == "full":
        return standardised(joint), "full", reg
    return joint, "diag", reg


def diagonal_moments(resp: np.ndarray, z: np.ndarray, reg: float):
    """(weights, means, variances + reg) of each component in ``z``'s units under the responsibilities ``resp``."""
    nk = resp.sum(0) + 10 * np.finfo(np.float64).eps
    means = resp.T @ z / nk[:, None]
    variances = np.maximum(resp.T @ z ** 2 / nk[:, None] - means ** 2, 0.0) + reg
    return nk / nk.sum(), means, variances


def side_by_side(codes) -> np.ndarray:
    """Codes of the same points by several autoencoders as one array (N, sum of J): each centred and
    divided by its overall standard deviation, so that each weighs the same in distances."""
    centred = [c - c.mean(0) for c in map(np.asarray, codes)]
    return np.concatenate([c / max(float(c.std()), 1e-12) for c in centred], axis=1)


def tsne_embedding(z: np.ndarray, seed: int = 0) -> np.ndarray:
    """scikit-learn's Barnes-Hut t-SNE of ``z`` in ``TSNE_DIM`` dimensions (fewer for narrower codes), PCA start."""
    # scikit-learn's perplexity (default 30) must stay below the number of points: a third of a small set
    perplexity = min(TSNE_PERPLEXITY, max(1.0, (len(z) - 1) / 3))
    dim = min(TSNE_DIM, z.shape[1])  # the PCA start needs as many code dimensions
    return TSNE(dim, init="pca", perplexity=perplexity, max_iter=TSNE_ITERATIONS,
                random_state=seed).fit_transform(z).astype(np.float64)


def choose_start(space: np.ndarray, n_clusters: int, covariance: str, reg: float, seed: int, n_init: int,
                 select: str = "silhouette", bar=None) -> GaussianMixture:
    """``n_init`` single-start GMMs on ``space`` (k-means starts drawn from ``seed``); the one ``select`` keeps.

    ``"silhouette"``: the largest silhouette of the hard labels on ``space``; ``"likelihood"``: the largest
    likelihood bound (scikit-learn's ``n_init``); ``"agreement"``: the medoid of the starts' hard
    partitions under the adjusted Rand index, the start maximising (1 / (R - 1)) sum_{r' != r}
    ARI(labels_r, labels_r') (compared with the silhouette in ``docs/studies/stability.md``).
    """
    if select == "likelihood":  # scikit-learn's own restarts, kept by their likelihood bound
        gmm = GaussianMixture(n_components=n_clusters, covariance_type=covariance, random_state=seed,
                              n_init=n_init, reg_covar=reg, max_iter=200).fit(space)
        if bar is not None:
            bar.update(n_init)
        return gmm
    fits = gmm_starts(space, n_clusters, covariance, reg, seed, n_init, bar)
    labels = [gmm.predict(space) for gmm in fits]
    if select == "silhouette":
        scores = [silhouette_score(space, lab) if len(np.unique(lab)) > 1 else -1.0 for lab in labels]
    else:
        agree = np.array([[adjusted_rand_score(a, b) for b in labels] for a in labels])
        scores = (agree.sum(1) - 1.0) / max(n_init - 1, 1)
    return fits[int(np.argmax(scores))]


def gmm_starts(space: np.ndarray, n_clusters: int, covariance: str, reg: float, seed: int, n_init: int,
               bar=None) -> list:
    """``n_init`` GaussianMixtures on ``space``, each from one k-means start, the starts drawn in turn from ``seed``."""
    rng = np.random.RandomState(seed)
    fits = []
    for _ in range(n_init):
        fits.append(GaussianMixture(n_components=n_clusters, covariance_type=covariance, random_state=rng,
                                    reg_covar=reg, max_iter=200).fit(space))
        if bar is not None:
            bar.update()
    return fits


def gmm_partitions(space: np.ndarray, n_clusters: int, covariance: str, reg: float, seed: int, n_init: int,
                   bar=None) -> list:
    """The hard labels of each of :func:`gmm_starts`' ``n_init`` GMMs on ``space``."""
    return [gmm.predict(space) for gmm in gmm_starts(space, n_clusters, covariance, reg, seed, n_init, bar)]


def co_association(partitions) -> np.ndarray:
    """A[n, m] = the fraction of ``partitions`` (label vectors over the same points) that put n and m together."""
    labels = np.asarray(partitions)
    together = np.zeros((labels.shape[1],) * 2, dtype=np.float32)
    for lab in labels:
        together += lab[:, None] == lab[None, :]
    return together / len(labels)


def consensus_partition(partitions, n_clusters: int) -> np.ndarray:
    """The partition that ``partitions`` agree on: spectral clustering of the co-association matrix A
    (:func:`co_association`) as the affinity, into ``n_clusters`` groups; labels 0..n_clusters-1.

    Evidence accumulation (Fred & Jain, 2005): the affinity of a pair is the share of starts that put it
    together, whichever labels each start gave it, so a start that splits one group and merges two
    others is outvoted wherever the other starts, or the other autoencoders' codes, disagree with it.
    The labels are read off the leading eigenvectors by ``cluster_qr`` (Damle et al., 2019), which
    draws nothing at random.
    """
    with warnings.catch_warnings():  # groups that no start ever joins are disconnected: the case of full agreement
        warnings.filterwarnings("ignore", "Graph is not fully connected")
        return SpectralClustering(n_clusters, affinity="precomputed", assign_labels="cluster_qr",
                                  random_state=0).fit_predict(co_association(partitions))
