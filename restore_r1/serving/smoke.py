"""The deployment smoke test that ``helm test`` runs: the server is ready and one restore works.

    python -m restore_r1.serving.smoke --url restore-r1:8000 [--protocol http|grpc]

Checks the server's and the agent model's readiness (``/v2/health/ready`` and the model's ready
endpoint), then restores one small synthetic image through ``restore_r1_agent``: the answer must
have the input's shape and be complete (a partial answer means a tool or the policy failed). Prints
one line and exits 0, or prints one ``error:`` line and exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from restore_r1.serving.client import RemoteError, RestoreResult, TritonAgentClient

#: Side of the square test image (pixels): above the agent's minimum side, small enough for a CPU.
SMOKE_SIDE = 64
#: Noise std of the test image (uint8 levels): something for a denoiser to do.
NOISE_STD = 12.0
#: Seconds to wait for readiness (the chart's startup probe has passed before helm test runs).
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 120.0


class SmokeError(RuntimeError):
    """The deployment failed the smoke test (the message says how, in one line)."""


def smoke_image(side: int = SMOKE_SIDE, seed: int = 0) -> np.ndarray:
    """A noisy colour gradient, uint8 RGB ``side``×``side``×3 (deterministic for ``seed``)."""
    if side < 1:
        raise ValueError(f"smoke image side {side}: expected >= 1")
    ramp = np.linspace(0.0, 255.0, side)
    clean = np.stack([ramp[None, :].repeat(side, 0), ramp[:, None].repeat(side, 1), np.full((side, side), 128.0)], axis=-1)
    noisy = clean + np.random.default_rng(seed).normal(0.0, NOISE_STD, clean.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def check(url: str, protocol: str = "http", side: int = SMOKE_SIDE, ready_timeout_s: float | None = None) -> RestoreResult:
    """Waits for readiness, restores :func:`smoke_image` and checks the answer.

    Raises:
        SmokeError: not ready in time, the request failed, or the answer is partial or malformed.
    """
    ready_timeout_s = READY_TIMEOUT_S if ready_timeout_s is None else ready_timeout_s
    client = TritonAgentClient(url, protocol, timeout_s=REQUEST_TIMEOUT_S)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not client.ready():
            if time.monotonic() > deadline:
                raise SmokeError(f"Triton at {url} ({protocol}) or its agent model is not ready after {ready_timeout_s:g} s")
            time.sleep(1.0)
        img = smoke_image(side)
        try:
            result = client.restore(img)
        except RemoteError as exc:
            raise SmokeError(f"restore failed: {exc}") from None
    finally:
        client.close()
    if result.image.shape != img.shape or result.image.dtype != np.uint8:
        raise SmokeError(f"restore answered a {result.image.dtype} image of shape {result.image.shape}, expected uint8 {img.shape}")
    if result.partial:
        raise SmokeError(f"restore answered partially: {result.failed}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Restore-R1 deployment smoke test: readiness and one restore.")
    parser.add_argument("--url", required=True, help="host:port of Triton's HTTP (or gRPC) endpoint")
    parser.add_argument("--protocol", default="http", choices=("http", "grpc"))
    parser.add_argument("--side", type=int, default=SMOKE_SIDE, help="side of the square test image")
    args = parser.parse_args(argv)
    try:
        result = check(args.url, args.protocol, args.side)
    except (SmokeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {args.url} ready; restored a {args.side}x{args.side} image with {result.tools} (policy version {result.policy_version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
