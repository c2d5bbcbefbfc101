"""Data-parallel GRPO (restore_r1.agent.distributed): the scheme's pieces, world size 1 through
torch.distributed against the plain trainer (bit for bit), and real ``torchrun`` runs of the CLI
with 2 gloo ranks: the same policy as one process on the same global batch, and a rank killed
mid-run that the restarted job resumes from the checkpoint to the uninterrupted run's weights.

The 2-rank tolerance, and why: the episodes are the same (actions are sampled on the global
batch with the shared generator, so the draws are those of one process), but the gradient of the
global loss is summed as two partial sums plus an all-reduce instead of one sum, and each rank's
MLP runs on a batch of other rows; both round differently in float32, and Adam's m/√v carries
the difference on. Measured on this test's run: weights (|w| <= 0.15) within 3e-8, logged loss
within 1e-6 relative; the test allows WEIGHT_ATOL = 1e-5 and STATS_RTOL = 1e-4, and requires
identical episodes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from restore_r1.agent import distributed as d
from restore_r1.agent.policy import Policy, PolicyConfig
from restore_r1.agent.trainer import train
from restore_r1.serving.server import free_port
from tests.test_trainer import TOOLS, ToyEncoder, ToyJudge, toy_config, toy_images

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed_worker.py"
#: Largest absolute difference allowed between the weights of a 2-rank and a 1-process run.
WEIGHT_ATOL = 1e-5
#: Relative difference allowed in the logged loss terms (same reasons as the weights).
STATS_RTOL = 1e-4
#: Log fields that must be equal: they only depend on the episodes.
EPISODE_FIELDS = ("mean_reward", "mean_return", "mean_final_score", "mean_steps", "advantage_std")
TINY_TRAIN = [
    "--steps",
    "4",
    "--group",
    "4",
    "--batch-images",
    "2",
    "--tools",
    "nlm_denoise,gamma_correction,jpeg_dct_deblock",
    "--judge",
    "relative",
    "--checkpoint-every",
    "2",
    "--no-progress",
]
TORCHRUN_TIMEOUT_S = 600


# ------------------------------------------------------------------------------------ the pieces
def test_shard_gives_contiguous_blocks_in_rank_order():
    items = list(range(7))
    blocks = [d.shard(items, r, 3) for r in range(3)]
    assert blocks == [[0, 1, 2], [3, 4], [5, 6]]
    assert sum(blocks, []) == items
    assert d.shard(items, 0, 1) == items
    with pytest.raises(ValueError, match="2 image\\(s\\) per batch for 3 ranks"):
        d.shard([0, 1], 0, 3)
    with pytest.raises(ValueError, match="rank 3 outside"):
        d.shard(items, 3, 3)


class PresetGather:
    """A collective whose all_gather answers with the other ranks' values given up front."""

    def __init__(self, rank: int, others: dict[int, object], world_size: int):
        self.rank, self.world_size, self.others = rank, world_size, others

    def all_gather(self, obj):
        return [obj if r == self.rank else self.others[r] for r in range(self.world_size)]


def _policy():
    return Policy(PolicyConfig("toy-means", {}, 3, list(TOOLS), hidden_sizes=(8,), max_steps=3), generator=torch.Generator().manual_seed(3))


def test_global_batch_actor_draws_what_one_process_draws():
    policy = _policy()
    rng = np.random.default_rng(0)
    feats = rng.random((5, 3), dtype=np.float32)
    hists = [[], [0], [1, 2], [], [3]]
    one = policy.act(feats, hists, greedy=False, generator=torch.Generator().manual_seed(11))
    # rank 1 of 2 holds rows 3..4; rank 0 holds rows 0..2
    actor = d.GlobalBatchActor(PresetGather(1, {0: (feats[:3], hists[:3])}, 2))
    chosen, logp = actor.act(policy, feats[3:], hists[3:], greedy=False, generator=torch.Generator().manual_seed(11))
    assert torch.equal(chosen, one[0][3:]) and torch.equal(logp, one[1][3:])
    # a rank with no running episode still takes part, and gets no rows
    actor = d.GlobalBatchActor(PresetGather(1, {0: (feats, hists)}, 2))
    chosen, _ = actor.act(policy, np.zeros((0, 3), np.float32), [], greedy=False, generator=torch.Generator().manual_seed(11))
    assert chosen.shape == (0,)
    # nobody has one: the lockstep loop ends
    actor = d.GlobalBatchActor(PresetGather(0, {1: (np.zeros((0, 3), np.float32), [])}, 2))
    assert actor.act(policy, np.zeros((0, 3), np.float32), [], greedy=False, generator=None) is None


class DoublingSum:
    """all_reduce_sum_ as if a second rank held the same tensor."""

    rank, world_size = 0, 2

    def all_reduce_sum_(self, tensor):
        return tensor.mul_(2)


def test_gradients_are_summed_in_one_buffer_and_missing_ones_count_as_zero():
    policy = _policy()
    params = list(policy.parameters())
    for p in params:
        p.grad = torch.ones_like(p)
    params[-1].grad = None
    d.all_reduce_gradients(params, DoublingSum())
    assert all(torch.equal(p.grad, torch.full_like(p, 2.0)) for p in params[:-1])
    assert torch.equal(params[-1].grad, torch.zeros_like(params[-1]))
    before = [p.grad.clone() for p in params]
    d.all_reduce_gradients(params, d.SingleProcess())
    assert all(torch.equal(a, p.grad) for a, p in zip(before, params))


def test_diverged_ranks_and_bad_settings_are_named():
    with pytest.raises(RuntimeError, match=r"differs between rank 0 and rank\(s\) \[1\]"):
        d.check_same_on_all_ranks(PresetGather(0, {1: "b"}, 2), "a", "the policy")
    with pytest.raises(ValueError, match="dist backend 'mpi'"):
        d.resolve_backend("mpi")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="nccl needs a CUDA device"):
            d.resolve_backend("nccl")
    assert d.resolve_backend("gloo") == "gloo"
    with pytest.raises(ValueError, match="WORLD_SIZE='x'"):
        d.launched_world_size({"WORLD_SIZE": "x"})


def test_more_ranks_than_images_per_batch_is_refused_before_any_collective(tmp_path):
    class NoCalls:
        rank, world_size = 0, 3

        def __getattr__(self, name):
            raise AssertionError(f"collective {name} called")

    with pytest.raises(ValueError, match="2 image\\(s\\) per batch for 3 ranks"):
        train(toy_images(), tmp_path / "run", ToyEncoder(), ToyJudge(), TOOLS, toy_config(batch_images=2), progress=False, collective=NoCalls())


# ------------------------------------------------------------------ world size 1, bit for bit


NCCL = pytest.param("nccl", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="NCCL needs a CUDA device")])


@pytest.mark.parametrize("backend", ["gloo", NCCL])
def test_world_size_one_through_torch_distributed_is_the_plain_trainer(tmp_path, monkeypatch, backend):
    cfg = toy_config(updates=4, batch_images=3, group_size=4, checkpoint_every=2)
    plain = train(toy_images(), tmp_path / "plain", ToyEncoder(), ToyJudge(), TOOLS, cfg, progress=False)
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    collective = d.init_from_env(backend)
    try:
        assert isinstance(collective, d.TorchCollective) and collective.world_size == 1 and collective.backend == backend
        dist = train(toy_images(), tmp_path / "dist", ToyEncoder(), ToyJudge(), TOOLS, cfg, progress=False, collective=collective)
    finally:
        d.shutdown()
    assert (plain.policy_dir / "policy.safetensors").read_bytes() == (dist.policy_dir / "policy.safetensors").read_bytes()
    for name in ("trainer_state.json", "trainer_state.pt"):
        a = (tmp_path / "plain" / "checkpoints" / "update_000004" / name).read_bytes()
        assert a == (tmp_path / "dist" / "checkpoints" / "update_000004" / name).read_bytes(), name
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert [strip(r) for r in plain.records] == [strip(r) for r in dist.records]
    assert not list((tmp_path / "dist").glob(".rank0-*"))  # the shared-folder probe is removed


def test_distributed_flag_needs_torchrun_and_torchrun_needs_the_flag(tmp_path, monkeypatch, capsys):
    from restore_r1.cli import main

    for name in d.TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--tools", "gamma_correction", "--judge", "relative"]
    assert main([*args, "--distributed"]) == 2
    assert "needs the torchrun environment (RANK, WORLD_SIZE" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "launched as one of 2 ranks (WORLD_SIZE) without --distributed" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- real torchrun
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in d.TORCHRUN_ENV}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _torchrun(nproc: int, out: Path, data: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), *extra]
    cmd += [str(WORKER), "train", "--distributed", "--dist-backend", "gloo", "--data", str(data), "--out", str(out), *TINY_TRAIN]
    return subprocess.run(cmd, cwd=ROOT, env=env or _env(), capture_output=True, text=True, timeout=TORCHRUN_TIMEOUT_S)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "policy" / "policy.safetensors"))


@pytest.fixture(scope="module")
def runs(tiny_train_data, tmp_path_factory) -> dict[str, Path]:
    """The same training as one process (in this process) and as 2 torchrun ranks."""
    from restore_r1.cli import main

    root = tmp_path_factory.mktemp("dist-runs")
    assert main(["train", "--data", str(tiny_train_data), "--out", str(root / "one"), *TINY_TRAIN]) == 0
    proc = _torchrun(2, root / "two", tiny_train_data)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"one": root / "one", "two": root / "two"}


@pytest.mark.slow
def test_two_ranks_train_the_policy_of_one_process(runs):
    one, two = _log(runs["one"]), _log(runs["two"])
    assert [r["update"] for r in two] == [1, 2, 3, 4]
    for a, b in zip(one, two):
        for field in EPISODE_FIELDS:
            assert a[field] == b[field], (a["update"], field, a[field], b[field])
        for field in ("loss", "kl", "entropy", "grad_norm"):
            assert b[field] == pytest.approx(a[field], rel=STATS_RTOL, abs=1e-9), (a["update"], field)
    wa, wb = _weights(runs["one"]), _weights(runs["two"])
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst <= WEIGHT_ATOL, f"2-rank weights differ from 1-process weights by {worst:.3g} > {WEIGHT_ATOL}"
    # rank 1 wrote nothing of its own: one log, one set of checkpoints, one policy
    assert sorted(p.name for p in (runs["two"] / "checkpoints").iterdir()) == ["latest", "update_000002", "update_000004"]


@pytest.mark.slow
def test_a_killed_rank_restarts_the_job_which_resumes_to_the_same_weights(runs, tiny_train_data, tmp_path):
    marker = tmp_path / "killed"
    env = _env(KILL_RANK="1", KILL_AFTER_UPDATE="3", KILL_MARKER=str(marker))
    proc = _torchrun(2, tmp_path / "run", tiny_train_data, "--max-restarts", "1", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert marker.read_text() == "rank 1 killed after update 3\n"
    # every rank of the restarted attempt resumed from the checkpoint of update 2 (the log line of
    # update 3 that the killed attempt wrote was dropped and written again)
    assert "resumed from 2" in proc.stdout, proc.stdout[-2000:]
    assert [r["update"] for r in _log(tmp_path / "run")] == [1, 2, 3, 4]
    # a run is reproducible for a given world size: the resumed one ends with the uninterrupted 2-rank weights
    assert (tmp_path / "run" / "policy" / "policy.safetensors").read_bytes() == (runs["two"] / "policy" / "policy.safetensors").read_bytes()
    strip = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "tool_cache_hit_rate")}  # noqa: E731
    assert [strip(r) for r in _log(tmp_path / "run")] == [strip(r) for r in _log(runs["two"])]
