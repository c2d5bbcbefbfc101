"""Data-parallel GRPO over ``torch.distributed``: the ranks, their share of a batch, the collectives.

The scheme (docs/method.md §1.5), for world size W:

1. **Same global batch.** Every rank draws the batch's images from the same numpy Generator
   (``seed + 1``) and rolls out one contiguous block of its groups (:func:`shard`): concatenated
   in rank order, the blocks are the single process's trajectories in the single process's order.
2. **Actions sampled on the global batch.** At each lockstep decision the ranks all-gather the
   features and tool histories of their running episodes; every rank runs the policy MLP on the
   whole batch with the shared action Generator (``seed + 2``) and keeps its own rows
   (:class:`GlobalBatchActor`). The draws are those one process makes on the same batch, so the
   episodes do not depend on W. Only the MLP (microseconds) is repeated on every rank; the tools,
   the encoder and the judge — the cost of a rollout — run once, on the rank that owns the group.
3. **Gradients all-reduced.** A rank's loss is its steps' share of the global loss (weights
   ``1 / (n_traj · T_i)`` with n_traj the *global* number of trajectories), so the SUM of the ranks'
   gradients is the gradient of the global loss: one flat all-reduce per gradient step
   (:meth:`Collective.all_reduce_sum_`), then the same norm clipping and Adam step on every rank.
   The parameters stay equal on all ranks; the trainer compares their digests at each checkpoint.
4. **Rank 0 writes** the log, the checkpoints (atomically) and the final policy. On resume, rank 0
   names the latest checkpoint and every rank loads that one from the shared run folder.

A run is reproducible for a given W (every random stream is seeded from ``config.seed`` alone and
gloo's sums are deterministic); across W it differs only by the rounding of the gradient sum and
of the per-rank MLP batches (tests/test_distributed.py measures it). W = 1 through this module is
bit-identical to the single-process trainer.

:class:`SingleProcess` is the trivial collective of the plain path; :func:`init_from_env` joins the
process group that ``torchrun`` describes in the environment (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

#: ``--dist-backend`` values; ``auto`` is NCCL when CUDA is available, else gloo.
BACKENDS = ("auto", "gloo", "nccl")
#: Variables ``torchrun`` (and the Kubeflow Trainer's torch runtime, through it) sets for each rank.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: How long a rank waits in a collective for the others (a dead peer fails the job after this at
#: the latest; torchrun and the Trainer's JobSet usually stop the survivors much sooner).
DEFAULT_TIMEOUT_S = 1800.0


class Collective(Protocol):
    """What the trainer needs from a group of ranks (all calls are collective: every rank makes
    them, in the same order)."""

    rank: int
    world_size: int

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        ...

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        ...

    def all_reduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sums ``tensor`` (float, CPU) over the ranks in place; returns it."""
        ...

    def barrier(self) -> None: ...


@dataclass
class SingleProcess:
    """The collective of one process: every operation is the identity."""

    rank: int = 0
    world_size: int = 1

    def all_gather(self, obj: Any) -> list[Any]:
        return [obj]

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def all_reduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def barrier(self) -> None:
        pass


@dataclass
class TorchCollective:
    """A ``torch.distributed`` process group.

    Objects travel over a gloo group (``object_group``); tensors over the default group, on
    ``device`` (``cuda:LOCAL_RANK`` under NCCL, whose collectives only take GPU tensors: the
    gradient buffer is copied there and back; the policy itself stays on the CPU).
    """

    rank: int
    world_size: int
    backend: str
    device: torch.device
    object_group: Any = None

    def all_gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.object_group)
        return out

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=src, group=self.object_group)
        return box[0]

    def all_reduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if self.device.type == "cpu":
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            return tensor
        moved = tensor.to(self.device)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        tensor.copy_(moved.cpu())
        return tensor

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier(group=self.object_group)


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``nccl`` with CUDA, else ``gloo``; checks the others.

    Raises:
        ValueError: an unknown backend, or ``nccl`` without a CUDA device.
    """
    if backend == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "gloo":
        return backend
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("dist backend nccl needs a CUDA device; none is visible here (use gloo on CPU)")
        return backend
    raise ValueError(f"dist backend {backend!r}: expected one of {', '.join(BACKENDS)}")


def launched_world_size(environ: dict[str, str] | None = None) -> int:
    """WORLD_SIZE as ``torchrun`` set it (1 when not launched by torchrun)."""
    value = (os.environ if environ is None else environ).get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={value!r} is not an integer") from None


def init_from_env(backend: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> TorchCollective:
    """Joins the process group ``torchrun`` describes (``env://``: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).

    Raises:
        ValueError: a variable is missing (not launched by torchrun), or a bad backend.
    """
    import torch.distributed as dist

    missing = [name for name in TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise ValueError(
            f"distributed training needs the torchrun environment ({', '.join(missing)} not set): "
            "launch with `torchrun --nproc-per-node N -m restore_r1.cli train --distributed ...`"
        )
    backend = resolve_backend(backend)
    local_rank = int(os.environ["LOCAL_RANK"])
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)  # also where this rank's neural tools run ("cuda" = the current device)
    timeout = datetime.timedelta(seconds=timeout_s)
    if not dist.is_initialized():
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group(backend=backend, store=_attempt_store(rank, world_size, timeout), rank=rank, world_size=world_size, timeout=timeout)
    object_group = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None
    return TorchCollective(rank=dist.get_rank(), world_size=dist.get_world_size(), backend=backend, device=device, object_group=object_group)


def _attempt_store(rank: int, world_size: int, timeout: datetime.timedelta):
    """The rendezvous store of this attempt: MASTER_ADDR:MASTER_PORT, its keys prefixed by
    ``$TORCHELASTIC_RESTART_COUNT``.

    Why not plain ``env://``: when torchrun restarts its workers (``--max-restarts``, a rank was
    killed), the restarted ranks connect to the agent's store again under the same keys and read
    the dead attempt's gloo addresses ("connectFullMesh failed ... Connection refused"; seen with
    torch 2.14.1, cf. pytorch/pytorch#167288). Under torchrun the agent hosts the store
    (``TORCHELASTIC_USE_AGENT_STORE``) and every rank is a client; otherwise rank 0 hosts it.
    """
    import torch.distributed as dist

    agent_hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=not agent_hosts and rank == 0, timeout=timeout)
    return dist.PrefixStore(f"restore-r1/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def shutdown() -> None:
    """Leaves the process group (no-op when none was joined)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------ the scheme
def shard(items: Sequence, rank: int, world_size: int) -> list:
    """Rank ``rank``'s contiguous block of ``items`` (``numpy.array_split`` sizes: the first
    ``len % W`` ranks get one more); the blocks in rank order are ``items``.

    Raises:
        ValueError: fewer items than ranks (a rank without a group would only wait).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    n = len(items)
    if n < world_size:
        raise ValueError(f"{n} image(s) per batch for {world_size} ranks: each rank needs at least one group (raise --batch-images)")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return list(items[start : start + base + (1 if rank < extra else 0)])


@dataclass
class GlobalBatchActor:
    """Samples every lockstep decision on the global batch (step 2 of the scheme).

    ``rollout_many(..., lockstep=actor)`` calls :meth:`act` once per decision step on every rank,
    also on a rank whose episodes have all ended (with no rows), until no rank has a running
    episode.
    """

    collective: Collective

    def act(
        self, policy, features: np.ndarray, histories: Sequence[Sequence[int]], greedy: bool, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """This rank's rows of the policy's decision on all ranks' rows, or None when no rank has any.

        Args:
            features: float32 [n, D] raw encoder features of this rank's running episodes.
            histories: their n tool histories.
        """
        gathered = self.collective.all_gather((np.asarray(features, np.float32), [list(h) for h in histories]))
        counts = [len(h) for _, h in gathered]
        if sum(counts) == 0:
            return None
        all_features = np.concatenate([f for f, _ in gathered])
        all_histories = [h for _, hs in gathered for h in hs]
        chosen, logp = policy.act(all_features, all_histories, greedy=greedy, generator=generator)
        start = sum(counts[: self.collective.rank])
        stop = start + counts[self.collective.rank]
        return chosen[start:stop], logp[start:stop]


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter], collective: Collective) -> None:
    """Sums the gradients of ``parameters`` over the ranks (one flat buffer, step 3 of the scheme).

    A parameter without a gradient on this rank contributes zeros (and gets the others' sum).
    """
    params = list(parameters)
    if isinstance(collective, SingleProcess):
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    collective.all_reduce_sum_(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def parameters_digest(module: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes, in state-dict order (ranks compare it)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_same_on_all_ranks(collective: Collective, value: str, what: str) -> None:
    """Raises RuntimeError naming the ranks whose ``value`` differs from rank 0's."""
    values = collective.all_gather(value)
    differ = [r for r, v in enumerate(values) if v != values[0]]
    if differ:
        raise RuntimeError(f"{what} differs between rank 0 and rank(s) {differ}: the ranks have diverged")


def concat_over_ranks(collective: Collective, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor concatenated over the ranks in rank order (the identity for one process)."""
    if isinstance(collective, SingleProcess):
        return list(tensors)
    gathered = collective.all_gather([t.detach().cpu() for t in tensors])
    return [torch.cat([g[i] for g in gathered]) for i in range(len(tensors))]


def gather_lists(collective: Collective, items: list) -> list:
    """The ranks' lists concatenated in rank order."""
    if isinstance(collective, SingleProcess):
        return list(items)
    return [x for part in collective.all_gather(items) for x in part]
