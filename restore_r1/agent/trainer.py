"""The GRPO training loop (see :mod:`restore_r1.agent.grpo` for the objective).

Per update u:

1. draw ``batch_images`` images (numpy Generator), each repeated G times;
2. roll the current policy out on them, sampling actions (torch Generator), in lockstep; the
   judge scores every visited image (cached by digest) and gives the step rewards;
3. group advantages A_i from the returns of each image's G trajectories;
4. μ epochs of full-batch gradient steps on :func:`grpo_loss` (π_old = the policy that acted,
   π_ref = the initial policy), each with the gradient norm clipped;
5. one line of ``train_log.jsonl``; every ``checkpoint_every`` updates a resumable checkpoint.

With a :class:`~restore_r1.agent.distributed.Collective` of W ranks (``torchrun``), each rank rolls
out its block of each batch's groups and the gradients are summed over the ranks
(:mod:`restore_r1.agent.distributed` states the scheme); rank 0 writes the log, the checkpoints
and the policy. Without one (the default) training is one process, as described above.

Training reads only the degraded (``lq``) images of a data set, never the ground truth.
Randomness comes from Generators derived from ``config.seed``; the global RNGs are untouched.
A checkpoint holds the policy, the reference policy, the optimiser state, both generators'
states and the update index, so a killed run resumed from it ends with exactly the weights of an
uninterrupted run (the caches are rebuilt; they only save time).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from restore_r1.agent.distributed import (
    Collective,
    GlobalBatchActor,
    SingleProcess,
    all_reduce_gradients,
    check_same_on_all_ranks,
    concat_over_ranks,
    gather_lists,
    parameters_digest,
    shard,
)
from restore_r1.agent.env import EnvCaches, Trajectory, rollout_many
from restore_r1.agent.grpo import GRPOConfig, StepTerms, group_advantages, grpo_terms, loss_stats
from restore_r1.agent.policy import Policy, PolicyConfig, load_policy, save_policy
from restore_r1.agent.train_metrics import TrainingMonitor
from restore_r1.images import atomic_directory, atomic_write_bytes, check_rgb, image_digest, read_image

#: Files and folders inside ``out_dir``.
LOG_FILE = "train_log.jsonl"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
POLICY_DIR = "policy"
COLD_START_FILE = "cold_start.npz"
COLD_START_REPORT = "cold_start.json"
#: Version of the trainer checkpoint layout.
TRAINER_FORMAT_VERSION = 1
#: Offsets added to ``config.seed`` for each independent random stream.
SEED_OFFSET_INIT, SEED_OFFSET_BATCHES, SEED_OFFSET_ACTIONS = 0, 1, 2
#: Floor of a feature's std, relative to the mean std over all features: a feature that never
#: varies in the statistics sample is not divided by ~0.
STD_FLOOR_RELATIVE = 1e-2
STD_FLOOR_ABSOLUTE = 1e-8
#: GRPOConfig fields that may change between a run and its resumption.
RESUMABLE_CHANGES = ("updates", "checkpoint_every", "keep_checkpoints")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        policy: the trained policy (also saved to ``policy_dir``).
        out_dir: the run folder.
        policy_dir: ``out_dir/policy``, the :func:`save_policy` checkpoint.
        log_path: ``out_dir/train_log.jsonl``.
        updates: number of updates the policy has had in total.
        resumed_from: the update index the run resumed from, or None.
        records: the log records written by this call.
    """

    policy: Policy
    out_dir: Path
    policy_dir: Path
    log_path: Path
    updates: int
    resumed_from: int | None
    records: list[dict] = field(default_factory=list)


def load_lq_images(dataset_dir: str | os.PathLike) -> list[np.ndarray]:
    """Reads the degraded images of a data set folder, in manifest order.

    Each line of ``manifest.jsonl`` names its degraded image under ``"lq"`` (or ``"lq_path"``),
    relative to the folder. Ground-truth entries are never read.

    Returns:
        uint8 RGB H×W×3 images.

    Raises:
        FileNotFoundError: no ``manifest.jsonl``.
        ValueError: a line without an ``lq`` entry, or an empty manifest.
        ImageError: an unreadable image.
    """
    root = Path(dataset_dir)
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no such file; a data set folder holds manifest.jsonl and lq/*.png")
    images = []
    for lineno, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{manifest}:{lineno}: not valid JSON ({exc})") from None
        rel = entry.get("lq", entry.get("lq_path")) if isinstance(entry, dict) else None
        if not isinstance(rel, str):
            raise ValueError(f"{manifest}:{lineno}: no 'lq' image path in {line.strip()[:120]!r}")
        path = Path(rel) if Path(rel).is_absolute() else root / rel
        images.append(read_image(path))
    if not images:
        raise ValueError(f"{manifest}: no images listed")
    return images


def feature_statistics(
    encoder,
    images: Sequence[np.ndarray],
    tools: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    caches: EnvCaches,
) -> tuple[list[float], list[float]]:
    """Per-feature mean and std over ``images`` and each tool applied once to each of them.

    The policy sees the start images and the images one tool away from them most often; both
    are in the sample (and land in the caches the rollouts use). A std below
    ``STD_FLOOR_RELATIVE`` × the mean std is raised to that floor.
    """
    states, digests = [], []
    for img in images:
        d = image_digest(img)
        states.append(img)
        digests.append(d)
        for name, tool in tools.items():
            out, out_d = caches.tools.apply(name, tool, img, d)
            states.append(out)
            digests.append(out_d)
    feats = np.stack(caches.features.get_many(states, digests)).astype(np.float64)
    mean = feats.mean(axis=0)
    std = feats.std(axis=0)
    floor = max(STD_FLOOR_RELATIVE * float(std.mean()), STD_FLOOR_ABSOLUTE)
    std = np.maximum(std, floor)
    return mean.tolist(), std.tolist()


def _flatten(trajectories: Sequence[Trajectory], advantages: torch.Tensor, n_traj: int | None = None):
    """Per-decision tensors of the trajectories: features, histories, actions, logp_old, A, weights.

    ``n_traj``: the number of trajectories of the whole batch (default: these); a data-parallel
    rank holds only its share of them, and its weights are its share of the global loss.
    """
    feats, histories, actions, logp_old, adv, weights = [], [], [], [], [], []
    n_traj = len(trajectories) if n_traj is None else n_traj
    for traj, a in zip(trajectories, advantages.tolist()):
        t_i = len(traj.actions)
        feats.append(traj.features)
        histories.extend(traj.histories)
        actions.extend(traj.actions)
        logp_old.extend(traj.log_probs)
        adv.extend([a] * t_i)
        # 1/G Σ_i 1/T_i Σ_t (averaged over all groups): weight 1 / (n_traj · T_i) per step.
        weights.extend([1.0 / (n_traj * t_i)] * t_i)
    return (
        torch.from_numpy(np.concatenate(feats)),
        histories,
        torch.tensor(actions, dtype=torch.long),
        torch.tensor(logp_old, dtype=torch.float32),
        torch.tensor(adv, dtype=torch.float32),
        torch.tensor(weights, dtype=torch.float32),
    )


def grpo_update(
    policy: Policy,
    ref_policy: Policy,
    optimizer: torch.optim.Optimizer,
    trajectories: Sequence[Trajectory],
    group_size: int,
    config: GRPOConfig,
    collective: Collective | None = None,
) -> dict[str, float]:
    """Group advantages, then μ epochs of clipped, grad-norm-clipped gradient steps.

    Args:
        trajectories: consecutive groups of ``group_size`` trajectories, one group per image
            (with ``collective``: this rank's groups).
        collective: the data-parallel ranks; each call's gradients are summed over them before
            the clipping and the step. None: one process.

    Returns:
        stats of the last epoch over the whole batch (see :func:`grpo_loss`) plus
        ``advantage_std`` and ``grad_norm``.
    """
    comm = collective or SingleProcess()
    returns = torch.tensor([t.ret for t in trajectories], dtype=torch.float64).reshape(-1, group_size)
    advantages = group_advantages(returns, config.adv_eps).reshape(-1)
    n_traj = sum(comm.all_gather(len(trajectories)))
    features, histories, actions, logp_old, step_adv, weights = _flatten(trajectories, advantages, n_traj)
    with torch.no_grad():
        logp_ref, _ = ref_policy.log_probs(features, histories, actions)
    terms = None
    grad_norm = torch.zeros(())
    policy.train()
    for _ in range(config.update_epochs):
        logp_new, entropy = policy.log_probs(features, histories, actions)
        terms = grpo_terms(logp_new, logp_old, logp_ref, step_adv, entropy, clip_eps=config.clip_eps, kl_beta=config.kl_beta, entropy_coef=config.entropy_coef)
        loss = (weights * terms.per_step).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        all_reduce_gradients(policy.parameters(), comm)
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
        optimizer.step()
    policy.eval()
    # The stats of the whole batch: every rank's steps, in rank order (= one process's order).
    all_weights, ratio, surrogate, kl, entropy, per_step, all_advantages = concat_over_ranks(
        comm, [weights, terms.ratio, terms.surrogate, terms.kl, terms.entropy, terms.per_step, advantages]
    )
    stats = loss_stats(StepTerms(ratio=ratio, surrogate=surrogate, kl=kl, entropy=entropy, per_step=per_step), all_weights, config.clip_eps)
    stats["grad_norm"] = float(grad_norm)
    stats["advantage_std"] = float(all_advantages.std(unbiased=False))
    return stats


@dataclass(frozen=True)
class EpisodeSummary:
    """What the log needs of one trajectory (gathered from every rank; no images)."""

    rewards: tuple[float, ...]
    ret: float
    final_score: float
    steps: int
    tools: tuple[str, ...]

    @classmethod
    def of(cls, traj: Trajectory) -> EpisodeSummary:
        return cls(tuple(traj.rewards), traj.ret, traj.scores[-1], traj.steps, tuple(traj.tools_called))


def _cache_counts(comm: Collective, hits: int, misses: int) -> tuple[int, int]:
    """The tool cache's hits and misses summed over all ranks."""
    counts = comm.all_gather((hits, misses))
    return sum(h for h, _ in counts), sum(m for _, m in counts)


def _decided_by_main(comm: Collective, fn: Callable[[], object]):
    """``fn()`` run on rank 0, its result (or its exception, raised) on every rank."""
    outcome = None
    if comm.rank == 0:
        try:
            outcome = (True, fn())
        except Exception as exc:  # re-raised on every rank below, so no rank waits forever
            outcome = (False, exc)
    ok, value = comm.broadcast(outcome)
    if not ok:
        raise value
    return value


def _check_shared_folder(out_dir: Path, comm: Collective) -> None:
    """Every rank must see rank 0's run folder (checkpoints are read from it on resume).

    Raises:
        RuntimeError: naming the ranks that do not see the file rank 0 wrote there.
    """
    probe = out_dir / f".rank0-{uuid.uuid4().hex}"
    token = _decided_by_main(comm, lambda: (probe.write_text(probe.name), str(probe))[1])
    seen = comm.all_gather(Path(token).is_file())
    comm.barrier()
    if comm.rank == 0:
        Path(token).unlink(missing_ok=True)
    blind = [r for r, ok in enumerate(seen) if not ok]
    if blind:
        raise RuntimeError(f"rank(s) {blind} do not see rank 0's run folder {out_dir}: --out must be storage every rank shares (e.g. a ReadWriteMany volume)")


def train(
    images: Sequence[np.ndarray] | str | os.PathLike,
    out_dir: str | os.PathLike,
    encoder,
    judge,
    tools: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    config: GRPOConfig,
    progress: bool = True,
    resume: bool = True,
    callback: Callable[[int, dict], None] | None = None,
    collective: Collective | None = None,
    monitor: TrainingMonitor | None = None,
    cold_start_workers: int = 1,
) -> TrainResult:
    """Trains a tool-selection policy with GRPO against ``judge``.

    Args:
        images: uint8 RGB H×W×3 training images, or a data set folder (its ``lq`` images only).
        out_dir: run folder: ``train_log.jsonl``, ``checkpoints/``, and the final ``policy/``.
        encoder: frozen image encoder (``.name``, ``.dim``, ``.encode``, ``.config``).
        judge: reward model (``.name``, ``.score``), higher is better.
        tools: name -> callable ``uint8 RGB -> uint8 RGB``; the dict order is the action order.
        config: hyper-parameters.
        progress: show a tqdm bar.
        resume: continue from the latest checkpoint in ``out_dir`` when there is one; False
            starts afresh, deleting ``out_dir``'s old checkpoints and log.
        callback: called as ``callback(update_index, log_record)`` after each update (and its
            checkpoint); an exception it raises stops training (tests use it to simulate a kill).
        collective: data-parallel ranks (:func:`restore_r1.agent.distributed.init_from_env`);
            every rank calls ``train`` with the same arguments and ``out_dir`` on storage they all
            see. None: one process.
        monitor: live metrics (:class:`restore_r1.agent.train_metrics.PrometheusExporter`),
            fed by rank 0 after each update and closed at the end.
        cold_start_workers: processes the cold start's greedy search runs in (``config.cold_start``;
            the result does not depend on it).

    Returns:
        a :class:`TrainResult`.

    Raises:
        ValueError: no images or tools, a checkpoint made with other settings or data, or fewer
            images per batch than ranks.
    """
    from tqdm.auto import tqdm

    comm = collective or SingleProcess()
    main = comm.rank == 0

    if isinstance(images, (str, os.PathLike)):
        images = load_lq_images(images)
    images = [check_rgb(im, name=f"training image {i}") for i, im in enumerate(images)]
    if not images:
        raise ValueError("train: no training images")
    if not tools:
        raise ValueError("train: no tools")
    if min(config.batch_images, len(images)) < comm.world_size:
        raise ValueError(f"train: {min(config.batch_images, len(images))} image(s) per batch for {comm.world_size} ranks; each rank needs at least one group")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(comm, SingleProcess):
        _check_shared_folder(out_dir, comm)
    ckpt_root = out_dir / CHECKPOINTS_DIR
    log_path = out_dir / LOG_FILE
    data_digest = image_digest(np.frombuffer("".join(image_digest(im) for im in images).encode(), dtype=np.uint8))
    caches = EnvCaches().bind(encoder, judge)

    batch_rng = np.random.default_rng(config.seed + SEED_OFFSET_BATCHES)
    action_gen = torch.Generator().manual_seed(config.seed + SEED_OFFSET_ACTIONS)
    # Rank 0 decides which checkpoint (if any) every rank resumes from.
    latest = _decided_by_main(comm, lambda: _latest_checkpoint(ckpt_root) if resume else None)
    if latest is not None:
        policy, ref_policy, optimizer, start = _load_checkpoint(latest, config, data_digest, batch_rng, action_gen)
        if main:
            _truncate_log(log_path, start)
    else:
        if main:
            if ckpt_root.exists():
                shutil.rmtree(ckpt_root)
            log_path.unlink(missing_ok=True)
        mean = std = None
        if config.normalize_features and not config.cold_start:  # a cold start takes those of its states
            sample_idx = np.random.default_rng(config.seed + SEED_OFFSET_INIT).permutation(len(images))[: config.norm_images]
            mean, std = _decided_by_main(comm, lambda: feature_statistics(encoder, [images[i] for i in sorted(sample_idx)], tools, caches))
        policy_config = PolicyConfig(
            encoder_name=encoder.name,
            encoder_config=dict(encoder.config()),
            feature_dim=int(encoder.dim),
            tool_names=list(tools),
            hidden_sizes=config.hidden_sizes,
            max_steps=config.max_steps,
            forbid_repeat=config.forbid_repeat,
            forbid_cycle=config.forbid_cycle,
            feature_mean=mean,
            feature_std=std,
            extra={"judge": getattr(judge, "name", type(judge).__name__), "grpo": config.to_dict()},
        )
        if config.cold_start:
            state = _decided_by_main(
                comm, lambda: _cold_start(out_dir, images, tools, judge, encoder, config, policy_config, data_digest, cold_start_workers, progress)
            )
            policy = Policy(PolicyConfig.from_dict(state["config"]))
            policy.load_state_dict(state["weights"])
        else:
            policy = Policy(policy_config, generator=torch.Generator().manual_seed(config.seed + SEED_OFFSET_INIT))
        ref_policy = copy.deepcopy(policy)
        optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
        start = 0
    for p in ref_policy.parameters():
        p.requires_grad_(False)
    ref_policy.eval()
    policy.eval()
    if list(policy.config.tool_names) != list(tools):
        raise ValueError(f"checkpoint tools {policy.config.tool_names} differ from the given tools {list(tools)}")
    check_same_on_all_ranks(comm, parameters_digest(policy), "the policy at the start")

    records: list[dict] = []
    group = config.group_size
    actor = None if isinstance(comm, SingleProcess) else GlobalBatchActor(comm)
    monitor = monitor if main else None
    if monitor is not None:
        monitor.start(config.updates, start, list(tools), comm.world_size)
    bar = tqdm(total=config.updates, initial=start, disable=not progress or not main, desc="GRPO", unit="update")
    try:
        for update in range(start, config.updates):
            t0 = time.perf_counter()
            caches.tools.reset_counters()
            n_batch = min(config.batch_images, len(images))
            batch_idx = batch_rng.choice(len(images), size=n_batch, replace=False)
            mine = batch_idx if isinstance(comm, SingleProcess) else shard(batch_idx, comm.rank, comm.world_size)
            starts = [images[i] for i in mine for _ in range(group)]
            trajectories = rollout_many(
                policy,
                encoder,
                starts,
                tools,
                judge,
                greedy=False,
                generator=action_gen,
                tool_cost=config.tool_cost,
                caches=caches,
                lockstep=actor,
            )
            stats = grpo_update(policy, ref_policy, optimizer, trajectories, group, config, collective=comm)
            episodes = gather_lists(comm, [EpisodeSummary.of(t) for t in trajectories])
            hits, misses = _cache_counts(comm, caches.tools.hits, caches.tools.misses)
            record = {
                "update": update + 1,
                "mean_reward": float(np.mean([r for t in episodes for r in t.rewards])),
                "mean_return": float(np.mean([t.ret for t in episodes])),
                "mean_final_score": float(np.mean([t.final_score for t in episodes])),
                "advantage_std": stats["advantage_std"],
                "kl": stats["kl"],
                "entropy": stats["entropy"],
                "loss": stats["loss"],
                "clip_frac": stats["clip_frac"],
                "grad_norm": stats["grad_norm"],
                "mean_steps": float(np.mean([t.steps for t in episodes])),
                "tool_cache_hit_rate": hits / (hits + misses) if hits + misses else 0.0,
                "seconds": time.perf_counter() - t0,
            }
            done = update + 1
            checkpoint = bool(config.checkpoint_every and (done % config.checkpoint_every == 0 or done == config.updates))
            if checkpoint:
                check_same_on_all_ranks(comm, parameters_digest(policy), f"the policy after update {done}")
            if main:
                with open(log_path, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if checkpoint:
                    _save_checkpoint(ckpt_root, done, policy, ref_policy, optimizer, config, data_digest, batch_rng, action_gen)
            if monitor is not None:
                monitor.observe(record, episodes, hits, misses)
            records.append(record)
            bar.update(1)
            bar.set_postfix(ret=f"{record['mean_return']:.3f}", steps=f"{record['mean_steps']:.2f}", kl=f"{record['kl']:.4f}")
            if callback is not None:
                callback(update, record)
    except BaseException:
        if monitor is not None:
            monitor.close(linger=False)
        raise
    finally:
        bar.close()
    check_same_on_all_ranks(comm, parameters_digest(policy), "the final policy")
    policy_dir = out_dir / POLICY_DIR
    if main:
        save_policy(policy, policy_dir)
    comm.barrier()  # the policy is on disk before any rank returns
    if monitor is not None:
        monitor.close()
    return TrainResult(
        policy=policy,
        out_dir=out_dir,
        policy_dir=policy_dir,
        log_path=log_path,
        updates=max(start, config.updates),
        resumed_from=start if latest is not None else None,
        records=records,
    )


# ------------------------------------------------------------------------------ cold start
def _cold_start(
    out_dir: Path,
    images: Sequence[np.ndarray],
    tools: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    judge,
    encoder,
    config: GRPOConfig,
    policy_config: PolicyConfig,
    data_digest: str,
    workers: int,
    progress: bool,
) -> dict:
    """The initial policy fitted to the judge's greedy search on ``images`` (restore_r1.agent.distill).

    The search is saved in ``out_dir/cold_start.npz`` (keyed by what it was made from), so a run
    killed before its first checkpoint does not search again; the fit's statistics go to
    ``out_dir/cold_start.json``. Returns ``{"config": policy config dict, "weights": state_dict}``.
    """
    from restore_r1.agent import distill

    kw = {"tool_cost": config.tool_cost, "max_steps": config.max_steps, "forbid_repeat": config.forbid_repeat, "forbid_cycle": config.forbid_cycle}
    key = {**kw, "data": data_digest, "tools": list(tools), "judge": getattr(judge, "name", type(judge).__name__), "encoder": encoder.name}
    cache = out_dir / COLD_START_FILE
    t0 = time.perf_counter()
    per_image = distill.load_demonstrations(cache, key)
    reused = per_image is not None
    if per_image is None:
        per_image = distill.demonstrate_many(images, tools, judge, encoder, workers=workers, progress=progress, **kw)
        distill.save_demonstrations(cache, per_image, key)
    search_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = distill.DistillConfig(temperature=config.cold_start_temperature, epochs=config.cold_start_epochs, seed=config.seed + SEED_OFFSET_INIT)
    policy, stats = distill.fit_policy([d for demos in per_image for d in demos], policy_config, fit)
    report = {
        **stats,
        "images": len(per_image),
        "mean_greedy_steps": float(np.mean([len(demos) - 1 for demos in per_image])),
        "search_seconds": search_s,
        "search_reused": reused,
        "fit_seconds": time.perf_counter() - t0,
        "fit": fit.to_dict(),
    }
    atomic_write_bytes(out_dir / COLD_START_REPORT, (json.dumps(report, indent=2) + "\n").encode())
    return {"config": policy.config.to_dict(), "weights": policy.state_dict()}


# ------------------------------------------------------------------------------ checkpoints
def _latest_checkpoint(ckpt_root: Path) -> Path | None:
    pointer = ckpt_root / LATEST_FILE
    if not pointer.is_file():
        return None
    path = ckpt_root / pointer.read_text().strip()
    if not path.is_dir():
        raise FileNotFoundError(f"{pointer} names {path}, which does not exist; delete {ckpt_root} to start afresh")
    return path


def _save_checkpoint(
    ckpt_root: Path,
    done: int,
    policy: Policy,
    ref_policy: Policy,
    optimizer: torch.optim.Optimizer,
    config: GRPOConfig,
    data_digest: str,
    batch_rng: np.random.Generator,
    action_gen: torch.Generator,
) -> Path:
    """Writes ``checkpoints/update_NNNNNN/`` atomically, then points ``checkpoints/latest`` at it."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"update_{done:06d}"
    with atomic_directory(ckpt_root / name) as tmp:
        save_policy(policy, tmp / "policy")
        save_policy(ref_policy, tmp / "reference")
        torch.save({"optimizer": optimizer.state_dict(), "action_generator": action_gen.get_state()}, tmp / "trainer_state.pt")
        state = {
            "format_version": TRAINER_FORMAT_VERSION,
            "update": done,
            "config": config.to_dict(),
            "data_digest": data_digest,
            "batch_rng": batch_rng.bit_generator.state,
        }
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
    atomic_write_bytes(ckpt_root / LATEST_FILE, (name + "\n").encode())
    kept = sorted(p for p in ckpt_root.glob("update_*") if p.is_dir())
    for old in kept[: -config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return ckpt_root / name


def _load_checkpoint(
    path: Path,
    config: GRPOConfig,
    data_digest: str,
    batch_rng: np.random.Generator,
    action_gen: torch.Generator,
) -> tuple[Policy, Policy, torch.optim.Optimizer, int]:
    """Restores policy, reference, optimiser and generators (in place); returns the update index."""
    state = json.loads((path / "trainer_state.json").read_text())
    if state.get("format_version") != TRAINER_FORMAT_VERSION:
        raise ValueError(f"{path}: trainer checkpoint format {state.get('format_version')!r} is not supported")
    saved = GRPOConfig.from_dict(state["config"]).to_dict()
    current = config.to_dict()
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ValueError(f"{path}: cannot resume with different settings ({diffs}); use another out_dir or resume=False")
    if state["data_digest"] != data_digest:
        raise ValueError(f"{path}: the training images differ from those of the checkpointed run; use another out_dir or resume=False")
    policy = load_policy(path / "policy")
    ref_policy = load_policy(path / "reference")
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    blobs = torch.load(path / "trainer_state.pt", weights_only=True)
    optimizer.load_state_dict(blobs["optimizer"])
    action_gen.set_state(blobs["action_generator"])
    batch_rng.bit_generator.state = state["batch_rng"]
    return policy, ref_policy, optimizer, int(state["update"])


def _truncate_log(log_path: Path, upto: int) -> None:
    """Drops log lines of updates after ``upto`` (written by a run killed before its checkpoint)."""
    if not log_path.is_file():
        return
    kept = [line for line in log_path.read_text().splitlines() if line.strip() and json.loads(line)["update"] <= upto]
    atomic_write_bytes(log_path, "".join(line + "\n" for line in kept).encode())
