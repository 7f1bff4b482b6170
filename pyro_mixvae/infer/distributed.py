"""Data-parallel training on ``torch.distributed`` (launched with ``torchrun``).

:func:`setup` returns a :class:`DataParallel` when the process is one of several ranks of a job
(``WORLD_SIZE`` > 1 in the environment that ``torchrun`` sets, or a process group already
initialised by the caller) and a :class:`SingleProcess` with the same methods otherwise, so that
:func:`~pyro_mixvae.infer.train.fit` reads the same either way. Backend: ``gloo`` on CPU,
``nccl`` on CUDA, each rank on ``cuda:LOCAL_RANK``.

What crosses the ranks, and why it gives the single-process step on the union batch:

* **Shards.** Each rank draws its part of the epoch from a ``DistributedSampler`` (seed =
  ``config.seed``, ``set_epoch(epoch)``): one permutation of the N points per epoch, padded by
  repeating its first points to a multiple of W, rank r taking every W-th index. ``batch_size``
  is the *global* batch B: each rank takes B / W points per step (B must be divisible by W), so
  every rank takes the same ceil(ceil(N / W) / (B / W)) steps per epoch and the union of the W
  step-s batches is one contiguous block of the permutation.
* **Gradients, averaged.** The model's data plate scales a rank's batch B_r = B / W by N / B_r,
  so the mean over ranks of the per-rank gradients is (1/W) sum_r (N W / B) sum_{n in B_r} g_n =
  (N / B) sum_{n in B} g_n: the gradient of one process on the union batch. One all-reduce (SUM,
  then / W) over a flat buffer of every gradient in ``model.parameters()`` order; every rank then
  takes the same Adam step, so parameters stay identical without being sent again.
* **Conjugate statistics, summed.** The factorial prior's natural-gradient step
  (``factorial-mixture-prior.txt`` eq. 13 / App. D: lambda* from the sums N_k, sum gamma z,
  sum gamma (z^2 + var) with w = N / |B|) is linear in the sums, so summing them (and |B|)
  across ranks before the update (:func:`sum_across_ranks`) gives exactly the update on the union.
* **Initial state, broadcast.** Pretraining and the GMM initialisation run once, on rank 0; its
  parameters and buffers are then broadcast, so no rank depends on its own
  initialisation. A resumed run's checkpoint is read on rank 0 and broadcast likewise.
* **Finiteness, agreed.** Whether the step's loss is finite is all-reduced, so a NaN on one rank
  stops every rank at the same step with the same :class:`~pyro_mixvae.errors.NonFiniteLossError`.

Only rank 0 evaluates metrics, writes the checkpoint, ``history.jsonl`` and the progress bar;
the checkpoint records the world size and every rank's RNG state, so a distributed run resumes
exactly with the same number of processes, and any checkpoint resumes in a single process.
A peer that dies makes the collectives of the others fail (gloo) or time out (``timeout``);
that is raised as :class:`DistributedError`, and ``torchrun`` stops the whole job.
"""
from __future__ import annotations

import atexit
import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator, List, Optional, Sequence

import numpy as np
import pyro
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from ..errors import ConfigError, MixVAEError
from .checkpoint import load_checkpoint

# seconds a rank waits in a collective (rank 0's pretraining included) before giving up
TIMEOUT_ENV = "MIXVAE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800


class DistributedError(MixVAEError, RuntimeError):
    """A collective failed: another rank of the job stopped, or the job is set up inconsistently."""


_ACTIVE: Optional["DataParallel"] = None  # the data-parallel SVI loop in progress (see :func:`sum_across_ranks`)
_BROKEN = False  # a collective failed: the group cannot be shut down cleanly (a peer is gone)


def launched() -> bool:
    """True when ``torchrun`` (or a caller) has started this process as one rank of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or (dist.is_available() and dist.is_initialized())


def setup(device: str, seed: int = 0, required: bool = False):
    """:class:`DataParallel` for this rank when :func:`launched` (or ``required``), else :class:`SingleProcess`.

    Initialises the default process group from the ``torchrun`` environment (``env://``) if the
    caller has not; the backend follows ``device``: ``nccl`` for CUDA, ``gloo`` for CPU.
    ``required`` (``mixvae fit --distributed``) turns a missing ``torchrun`` environment into a
    :class:`~pyro_mixvae.errors.ConfigError` instead of a single-process run.
    """
    if not (launched() or required):
        return SingleProcess(torch.device(device), seed)
    if not dist.is_available():
        raise ConfigError("distributed training needs a torch build with torch.distributed")
    device = torch.device(device)
    if not dist.is_initialized():
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ConfigError(f"distributed training needs the torchrun environment ({', '.join(missing)} unset): "
                              f"launch with `torchrun --nproc_per_node N -m pyro_mixvae fit ...`")
        if device.type == "cuda":
            device = _local_gpu()
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=timeout, **kwargs)
        atexit.register(_destroy)
    else:
        backend = dist.get_backend()
        if device.type == "cuda":
            device = _local_gpu()
        if (backend == "nccl") != (device.type == "cuda"):
            raise ConfigError(f"the process group uses {backend}, which does not suit device {device}: "
                              f"use nccl with CUDA devices and gloo with the CPU")
    return DataParallel(device, seed)


def _local_gpu() -> torch.device:
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise ConfigError(f"local rank {local} has no GPU: this machine has {torch.cuda.device_count()}; "
                          f"use --nproc_per_node <= {torch.cuda.device_count()}")
    return torch.device("cuda", local)


def _destroy() -> None:
    if not _BROKEN and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on rank 0 of a distributed job, and in a single process."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def sum_across_ranks(tensors: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """The sums over the ranks of ``tensors`` inside a data-parallel SVI loop; the tensors themselves otherwise.

    The factorial prior calls it on its minibatch statistics (N_k, sum gamma z, sum gamma (z^2 + var),
    |B|) before each natural-gradient update (eq. 13 / App. D), which is linear in them: the update
    then equals one process's update on the union of the ranks' batches. Outside :func:`fit`'s
    loop (pretraining and the prior initialisation run on rank 0 alone) nothing is exchanged.
    """
    if _ACTIVE is None:
        return list(tensors)
    return _ACTIVE.all_reduce_sum(tensors)


class SingleProcess:
    """The no-op counterpart of :class:`DataParallel`: one process, the whole data."""

    rank, world_size, is_main, distributed = 0, 1, True, False

    def __init__(self, device: torch.device, seed: int = 0):
        self.device, self.seed = device, int(seed)

    def batches(self, n: int, batch_size: int, generator: torch.Generator, epoch: int) -> Sequence[torch.Tensor]:
        return torch.randperm(n, generator=generator).split(batch_size)

    def steps_per_epoch(self, n: int, batch_size: int) -> int:
        return -(-n // batch_size)

    def attach(self, optimizer, n: int, batch_size: int) -> None:
        pass

    def all_finite(self, loss: torch.Tensor) -> bool:
        return bool(torch.isfinite(loss))

    def average_gradients(self, params) -> None:
        pass

    def reduce_epoch(self, total: torch.Tensor, terms: dict, n: int):
        return total, terms

    def checkpoint_extra(self, rng: dict) -> dict:
        return {}

    def load_checkpoint(self, path) -> dict:
        return load_checkpoint(path, map_location=self.device)

    def rank_rng_state(self, state: dict) -> dict:
        return state["rng"]

    def all_reduce_sum(self, tensors):
        return list(tensors)

    def broadcast_state(self, model, obj=None):
        return obj

    def broadcast_object(self, obj):
        return obj

    def gather_rng_states(self, state: dict) -> list:
        return [state]

    def seed_ranks(self, seed: int) -> None:
        pass

    def check_consistent(self, **facts) -> None:
        pass

    @contextmanager
    def training(self) -> Iterator[None]:
        yield


class DataParallel(SingleProcess):
    """One rank of a data-parallel job: sharding, gradient averaging, broadcasts (module docstring)."""

    distributed = True

    def __init__(self, device: torch.device, seed: int = 0):
        super().__init__(device, seed)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0

    def _sampler(self, n: int, seed: int) -> DistributedSampler:
        return DistributedSampler(range(n), num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=seed)

    def local_batch(self, batch_size: int) -> int:
        if batch_size % self.world_size:
            raise ConfigError(f"--batch-size {batch_size} is the global batch and must be divisible by the "
                              f"world size {self.world_size}")
        return batch_size // self.world_size

    def batches(self, n: int, batch_size: int, generator: torch.Generator, epoch: int) -> Sequence[torch.Tensor]:
        """This rank's index batches of ``epoch`` (``generator`` unused: the sampler's seed is the run's seed)."""
        sampler = self._sampler(n, self.seed)
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long).split(self.local_batch(batch_size))

    def steps_per_epoch(self, n: int, batch_size: int) -> int:
        per_rank = -(-n // self.world_size)
        return -(-per_rank // self.local_batch(batch_size))

    def attach(self, optimizer, n: int, batch_size: int) -> None:
        """Check that the ranks agree on the job, then make every ``optimizer.step()`` average the gradients first."""
        self.local_batch(batch_size)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.check_consistent(num_data=int(n), batch_size=int(batch_size), seed=self.seed,
                              parameters=[tuple(p.shape) for p in params])
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: self.average_gradients(params))

    def reduce_epoch(self, total: torch.Tensor, terms: dict, n: int):
        """The epoch's sums (loss x batch size, ELBO terms) over all ranks, rescaled from the ceil(N / W) W points
        the padded shards visited to N, so that ``/ N`` gives the per-point mean as in one process."""
        seen = -(-n // self.world_size) * self.world_size
        summed = self.all_reduce_sum([total.to(torch.float64)] + [torch.as_tensor(v, dtype=torch.float64)
                                                                   for v in terms.values()])
        scale = n / seen
        return (summed[0] * scale).to(total.dtype), {k: v * scale for k, v in zip(terms, summed[1:])}

    def checkpoint_extra(self, rng: dict) -> dict:
        """{'rng_ranks': [RNG state of rank 0, 1, ...]} for the checkpoint (a collective: every rank calls it)."""
        return {"rng_ranks": self.gather_rng_states(rng)}

    def load_checkpoint(self, path) -> dict:
        """The checkpoint read on rank 0 and broadcast; refused when written by a different number of processes
        (a single process may resume any checkpoint: see :meth:`SingleProcess.rank_rng_state`)."""
        state = self.broadcast_object(load_checkpoint(path, map_location="cpu") if self.is_main else None)
        written = int(state["config"].get("world_size", 1))
        if written != self.world_size:
            raise ConfigError(f"cannot resume: the checkpoint was written by {written} process(es) and this job has "
                              f"{self.world_size}; resume with --nproc_per_node {written} (in all) or in one process")
        return state

    def rank_rng_state(self, state: dict) -> dict:
        return state["extra"]["rng_ranks"][self.rank]

    # -- collectives ----------------------------------------------------------------------------
    def _collective(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (RuntimeError, dist.DistBackendError) as e:
            global _BROKEN
            _BROKEN = True
            raise DistributedError(f"rank {self.rank} of {self.world_size}: a collective failed -- another rank "
                                   f"stopped or timed out (see its error in torchrun's log); no checkpoint was "
                                   f"written for the unfinished epoch ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e

    def all_finite(self, loss: torch.Tensor) -> bool:
        """Every rank's loss finite? One all-reduce of a flag, so that all ranks stop at the same step."""
        bad = (~torch.isfinite(loss.detach())).to(torch.float32).reshape(1)
        self._collective(dist.all_reduce, bad)
        return bool(bad.item() == 0)

    def average_gradients(self, params) -> None:
        """Mean over ranks of every ``.grad``: one SUM all-reduce of a flat buffer in parameter order, / W.

        A parameter without a gradient on this step contributes zeros (and keeps ``grad`` None only
        if it has none on every rank)."""
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        has = torch.tensor([float(p.grad is not None) for p in params], device=self.device)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
                         + [has])
        self._collective(dist.all_reduce, flat)
        flat[:-len(params)].div_(self.world_size)
        offset = 0
        for p, present in zip(params, flat[-len(params):].tolist()):
            size = p.numel()
            if present > 0:
                grad = flat[offset:offset + size].view_as(p)
                if p.grad is None:
                    p.grad = grad.clone()
                else:
                    p.grad.copy_(grad)
            offset += size

    def all_reduce_sum(self, tensors):
        """SUM all-reduce of ``tensors`` flattened into one buffer (in their common dtype); returns new tensors."""
        tensors = list(tensors)
        if not tensors:
            return tensors
        dtype = tensors[0].dtype
        for t in tensors[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
        flat = torch.cat([t.detach().to(self.device, dtype).reshape(-1) for t in tensors])
        self._collective(dist.all_reduce, flat)
        out, offset = [], 0
        for t in tensors:
            out.append(flat[offset:offset + t.numel()].view(t.shape).to(t.dtype))
            offset += t.numel()
        return out

    def broadcast_state(self, model, obj=None):
        """Copy rank 0's parameters and buffers (in place) to every rank; also ``obj``."""
        for tensor in model.state_dict().values():
            self._collective(dist.broadcast, tensor, 0)
        return self.broadcast_object(obj)

    def broadcast_object(self, obj):
        box = [obj if self.is_main else None]
        self._collective(dist.broadcast_object_list, box, 0, device=self._object_device())
        return box[0]

    def gather_rng_states(self, state: dict) -> list:
        """Every rank's RNG state, in rank order (for the checkpoint; a collective)."""
        out = [None] * self.world_size
        self._collective(dist.all_gather_object, out, state)
        return out

    def _object_device(self):
        return self.device if self.device.type == "cuda" else None

    def seed_ranks(self, seed: int) -> None:
        """Give each rank its own RNG stream for the SVI phase (the guide's draws), from (seed, rank)."""
        pyro.set_rng_seed(int(np.random.SeedSequence([int(seed), self.rank]).generate_state(1)[0]))

    def check_consistent(self, **facts) -> None:
        """Refuse, on every rank, a job whose ranks disagree on ``facts`` (data size, settings)."""
        every = [None] * self.world_size
        self._collective(dist.all_gather_object, every, facts)
        for r, other in enumerate(every):
            if other != facts:
                diff = {k: (facts.get(k), other.get(k)) for k in facts if facts.get(k) != other.get(k)}
                raise DistributedError(f"rank {r} disagrees with rank {self.rank} on "
                                       + ", ".join(f"{k} ({a} here, {b} there)" for k, (a, b) in diff.items()))

    @contextmanager
    def training(self) -> Iterator[None]:
        """Within: :func:`sum_across_ranks` sums over the ranks (the conjugate statistics of ``conjugate_step``)."""
        global _ACTIVE
        previous, _ACTIVE = _ACTIVE, self
        try:
            yield
        finally:
            _ACTIVE = previous


__all__ = ["DataParallel", "DistributedError", "SingleProcess", "is_main_process", "launched", "setup",
           "sum_across_ranks"]
