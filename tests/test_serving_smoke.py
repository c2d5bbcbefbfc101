"""The deployment smoke test (`helm test`): its image, and its failure in one line. The success
path runs against a real Triton in tests/test_prometheus_live.py."""

from __future__ import annotations

import numpy as np
import pytest

from restore_r1.serving import smoke
from restore_r1.serving.server import free_port


def test_smoke_image_is_a_deterministic_noisy_gradient():
    a, b = smoke.smoke_image(), smoke.smoke_image()
    assert a.shape == (smoke.SMOKE_SIDE, smoke.SMOKE_SIDE, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert a[:, -1, 0].mean() > a[:, 0, 0].mean() + 200  # the red ramp
    assert 5 < np.std(a[..., 2].astype(float)) < 20  # the flat channel carries the noise
    with pytest.raises(ValueError, match="side 0"):
        smoke.smoke_image(0)


def test_unreachable_server_fails_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(smoke, "READY_TIMEOUT_S", 0.5)
    url = f"127.0.0.1:{free_port()}"
    with pytest.raises(smoke.SmokeError, match="not ready after 0.5 s"):
        smoke.check(url, ready_timeout_s=0.5)
    assert smoke.main(["--url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
