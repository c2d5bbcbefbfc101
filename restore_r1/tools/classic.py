"""Embedded restoration tools: classic image processing that runs here with no download.

Every public function maps uint8 RGB H×W×3 to uint8 RGB H×W×3, is deterministic (no RNG) and
takes its parameters explicitly; the defaults are the module-level constants below, chosen by
measurement with ``bench/tools_bench.py`` (results in ``bench/results/tools.md``).

The three brightening tools are the paper's (docs/method.md §4) exactly as AgenticIR implements them: on the
V channel of HSV (OpenCV's 8-bit HSV), CLAHE with clipLimit 2.0 and 8×8 tiles; gamma
``255·(v/255)^(1/1.5)`` (γ = 2/3); a constant shift of +40, clipped.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# --- brightening (docs/method.md §4; AgenticIR's brightening toolbox) ---------------------------------------
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILE_GRID = (8, 8)
#: AgenticIR's ``gamma = 1.5`` applied as ``(v/255) ** (1/gamma)``: the paper's γ = 2/3.
GAMMA_EXPONENT = 1.0 / 1.5
CONSTANT_SHIFT = 40

# --- denoising -------------------------------------------------------------------------------------
#: Non-local means: filter strength h = NLM_H_PER_SIGMA · σ̂ (σ̂ on the 0-255 scale, estimated).
NLM_H_PER_SIGMA = 0.9
NLM_TEMPLATE = 5
NLM_SEARCH = 13
#: Guided-filter denoising (self-guided, per channel): eps = (GUIDED_EPS_PER_SIGMA · σ̂/255)².
GUIDED_DENOISE_RADIUS = 4
GUIDED_EPS_PER_SIGMA = 2.0

# --- JPEG --------------------------------------------------------------------------------------------
#: Shifted-DCT thresholding: assumed quality (docs/method.md §2 draws 10..29), threshold = scale · step.
JPEG_DCT_QUALITY = 20
JPEG_DCT_THRESHOLD_SCALE = 0.35
JPEG_DCT_STEP = 2
#: Deblocking by a guided filter on luma with a blockiness-derived eps, chroma smoothed more.
JPEG_GUIDED_RADIUS = 2
JPEG_GUIDED_EPS = (6.0 / 255.0) ** 2
JPEG_CHROMA_RADIUS = 4
JPEG_CHROMA_EPS = (10.0 / 255.0) ** 2

# --- dehazing ----------------------------------------------------------------------------------------
#: Dark channel prior (He, Sun, Tang, CVPR 2009) with guided-filter refinement (He et al. 2010).
DCP_PATCH = 15
DCP_OMEGA = 0.95
DCP_T_MIN = 0.1
DCP_TOP_FRACTION = 0.001
DCP_GUIDED_RADIUS = 40
DCP_GUIDED_EPS = 1e-3
#: Colour attenuation prior: the paper's learned linear depth model and scattering β.
CAP_THETA = (0.121779, 0.959710, -0.780245)
CAP_BETA = 1.0
CAP_PATCH = 15
CAP_T_MIN = 0.1
# --- deblurring --------------------------------------------------------------------------------------
#: Angles tried when estimating the motion direction, degrees in [-90, 90).
MOTION_ANGLES = tuple(range(-90, 90, 3))
#: Motion kernel assumed: one-sided Gaussian streak (docs/method.md §2) of this radius and σ.
MOTION_RADIUS = 15
MOTION_SIGMA = 4.0
#: Offsets (degrees) around the gradient-energy axis tried when refining the motion direction.
MOTION_REFINE_OFFSETS = (-12.0, -6.0, 0.0, 6.0, 12.0)
#: Wiener noise-to-signal ratio (regularisation) for motion and defocus deconvolution.
MOTION_NSR = 0.03
DEFOCUS_NSR = 0.01
#: Disk radii tried when estimating defocus (docs/method.md §2 draws 3, 4 or 6).
DEFOCUS_RADII = (2, 3, 4, 5, 6)
DEFOCUS_ALIAS_SIGMA = 0.5
#: Richardson–Lucy iterations for motion deblurring.
RL_ITERATIONS = 8
#: Unsharp masking for defocus: amount and Gaussian σ.
UNSHARP_DEFOCUS = (1.0, 2.0)
#: Reflection padding around a deconvolved image (pixels), against wrap-around ringing.
DECONV_PAD = 32

# --- deraining ---------------------------------------------------------------------------------------
#: Streaks are thin, bright and near vertical (docs/method.md §2: ±30° from vertical, width ~3 px): a grey
#: opening with a horizontal segment longer than the streak width removes them.
RAIN_OPEN_LENGTH = 7
RAIN_THRESHOLD = 8
RAIN_MEDIAN = 5


# ===================================================================================================
# helpers
# ===================================================================================================
def _to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / np.float32(255.0)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _on_v(img: np.ndarray, update) -> np.ndarray:
    # OpenCV's 8-bit HSV, as AgenticIR (BGR and RGB give the same V, H and S round trip).
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[:, :, 2] = update(hsv[:, :, 2])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def box_filter(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² window, edges reflected. ``x`` float32 H×W or H×W×C."""
    k = 2 * radius + 1
    return cv2.blur(x, (k, k), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a grey guide (box-filter formulation, O(1) per pixel).

    Args:
        guide: float32 H×W in [0, 1].
        src: float32 H×W or H×W×C to filter.
        radius: window radius in pixels.
        eps: regularisation (on the [0, 1] scale, squared units).
    Returns:
        float32 of ``src``'s shape.
    """
    guide = guide.astype(np.float32)
    src = src.astype(np.float32)
    g = guide[:, :, None] if src.ndim == 3 else guide
    mean_i = box_filter(guide, radius)
    var_i = box_filter(guide * guide, radius) - mean_i * mean_i
    mean_p = box_filter(src, radius)
    cov_ip = box_filter(g * src, radius) - (mean_i[:, :, None] if src.ndim == 3 else mean_i) * mean_p
    if src.ndim == 3:
        a = cov_ip / (var_i[:, :, None] + eps)
        b = mean_p - a * mean_i[:, :, None]
    else:
        a = cov_ip / (var_i + eps)
        b = mean_p - a * mean_i
    return box_filter(a, radius) * g + box_filter(b, radius)


def estimate_noise_sigma(img: np.ndarray) -> float:
    """Gaussian noise σ on the 0-255 scale, averaged over channels.

    Donoho's robust estimator: median absolute value of the finest Haar diagonal detail
    coefficients divided by 0.6745 (what skimage's ``estimate_sigma`` computes with db1, without
    needing PyWavelets).
    """
    x = img.astype(np.float32)
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    x = x[:h, :w]
    diag = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) / 2.0
    return float(np.mean(np.median(np.abs(diag.reshape(-1, 3)), axis=0)) / 0.6745)


# ===================================================================================================
# dark (paper tools)
# ===================================================================================================
def clahe(img: np.ndarray, clip_limit: float = CLAHE_CLIP_LIMIT, tile_grid: tuple[int, int] = CLAHE_TILE_GRID) -> np.ndarray:
    """CLAHE on V of HSV (AgenticIR's ``histogram_equalization``). uint8 RGB in and out."""
    op = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=tile_grid)
    return _on_v(img, op.apply)


def gamma_correction(img: np.ndarray, exponent: float = GAMMA_EXPONENT) -> np.ndarray:
    """``v ← 255·(v/255)^exponent`` on V of HSV, rounded. uint8 RGB in and out."""
    lut = np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** exponent), 0, 255).astype(np.uint8)
    return _on_v(img, lambda v: cv2.LUT(v, lut))


def constant_shift(img: np.ndarray, shift: int = CONSTANT_SHIFT) -> np.ndarray:
    """``v ← min(v + shift, 255)`` on V of HSV. uint8 RGB in and out."""
    lut = np.clip(np.arange(256) + shift, 0, 255).astype(np.uint8)
    return _on_v(img, lambda v: cv2.LUT(v, lut))


# ===================================================================================================
# noise
# ===================================================================================================
def nlm_denoise(img: np.ndarray, h_per_sigma: float = NLM_H_PER_SIGMA, template: int = NLM_TEMPLATE, search: int = NLM_SEARCH) -> np.ndarray:
    """Non-local means (OpenCV, colour) with strength from the estimated noise σ."""
    sigma = estimate_noise_sigma(img)
    h = max(1.0, h_per_sigma * sigma)
    return cv2.fastNlMeansDenoisingColored(img, None, h, h, template, search)


def guided_denoise(img: np.ndarray, radius: int = GUIDED_DENOISE_RADIUS, eps_per_sigma: float = GUIDED_EPS_PER_SIGMA) -> np.ndarray:
    """Self-guided filter per channel (edge-preserving smoothing), eps from the estimated σ."""
    sigma = estimate_noise_sigma(img)
    x = _to_float(img)
    eps = (eps_per_sigma * sigma / 255.0) ** 2 + 1e-6
    out = np.stack([guided_filter(x[:, :, c], x[:, :, c], radius, eps) for c in range(3)], axis=2)
    return _to_uint8(out)


# ===================================================================================================
# JPEG
# ===================================================================================================
#: The JPEG standard's luminance quantisation table (ITU-T T.81, Annex K), quality 50.
JPEG_LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float32,
)


def jpeg_quant_table(quality: int) -> np.ndarray:
    """Luminance quantisation steps (0-255 scale) libjpeg uses at ``quality`` (1-100)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    return np.clip(np.floor((JPEG_LUMA_TABLE * scale + 50.0) / 100.0), 1, 255).astype(np.float32)


def _dct_matrix(n: int = 8) -> np.ndarray:
    k = np.arange(n)
    d = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float32)


def shifted_dct_threshold(channel: np.ndarray, thresholds: np.ndarray, step: int) -> np.ndarray:
    """Translation-invariant 8×8 DCT hard thresholding of one float32 H×W channel (0-255).

    Coefficients whose magnitude is below ``thresholds`` (8×8) are zeroed in every block of the
    grids shifted by multiples of ``step``; the reconstructions are averaged. The DC is kept.
    """
    d = _dct_matrix(8)
    h, w = channel.shape
    pad = 8
    padded = cv2.copyMakeBorder(channel, pad, pad + 8, pad, pad + 8, cv2.BORDER_REFLECT)
    thr = thresholds.copy()
    thr[0, 0] = 0.0
    acc = np.zeros((h, w), np.float32)
    shifts = [(dy, dx) for dy in range(0, 8, step) for dx in range(0, 8, step)]
    for dy, dx in shifts:
        hh, ww = ((h + 2 * pad - dy) // 8) * 8, ((w + 2 * pad - dx) // 8) * 8
        region = padded[dy : dy + hh, dx : dx + ww]
        blocks = region.reshape(hh // 8, 8, ww // 8, 8).transpose(0, 2, 1, 3)
        coeffs = d @ blocks @ d.T
        coeffs = np.where(np.abs(coeffs) >= thr, coeffs, 0.0)
        rec = (d.T @ coeffs @ d).transpose(0, 2, 1, 3).reshape(hh, ww)
        acc += rec[pad - dy : pad - dy + h, pad - dx : pad - dx + w]
    return acc / len(shifts)


def jpeg_dct_deblock(
    img: np.ndarray,
    quality: int = JPEG_DCT_QUALITY,
    threshold_scale: float = JPEG_DCT_THRESHOLD_SCALE,
    step: int = JPEG_DCT_STEP,
) -> np.ndarray:
    """JPEG artefact removal: shifted-DCT hard thresholding of luma with thresholds from the JPEG
    quantisation table at an assumed ``quality``; chroma smoothed by a luma-guided filter."""
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    y = shifted_dct_threshold(ycc[:, :, 0], threshold_scale * jpeg_quant_table(quality), step)
    guide = np.clip(y / 255.0, 0, 1)
    chroma = guided_filter(guide, ycc[:, :, 1:] / 255.0, JPEG_CHROMA_RADIUS, JPEG_CHROMA_EPS) * 255.0
    out = np.clip(np.concatenate([y[:, :, None], chroma], axis=2) + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_YCrCb2RGB)


def jpeg_guided_deblock(
    img: np.ndarray,
    radius: int = JPEG_GUIDED_RADIUS,
    eps: float = JPEG_GUIDED_EPS,
    chroma_radius: int = JPEG_CHROMA_RADIUS,
    chroma_eps: float = JPEG_CHROMA_EPS,
) -> np.ndarray:
    """Deblocking in YCrCb: self-guided filter on luma, a wider luma-guided filter on chroma."""
    ycc = _to_float(cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb))
    y = ycc[:, :, 0]
    y_out = guided_filter(y, y, radius, eps)
    c_out = guided_filter(y_out, ycc[:, :, 1:], chroma_radius, chroma_eps)
    out = _to_uint8(np.concatenate([y_out[:, :, None], c_out], axis=2))
    return cv2.cvtColor(out, cv2.COLOR_YCrCb2RGB)


# ===================================================================================================
# haze
# ===================================================================================================
def _dark_channel(x: np.ndarray, patch: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(x.min(axis=2), kernel, borderType=cv2.BORDER_REFLECT)


def _airlight(x: np.ndarray, haze_map: np.ndarray, top_fraction: float) -> np.ndarray:
    """The atmospheric light: mean colour of the ``top_fraction`` of pixels where ``haze_map`` is highest."""
    n = max(1, int(haze_map.size * top_fraction))
    idx = np.argpartition(haze_map.ravel(), -n)[-n:]
    return np.maximum(x.reshape(-1, 3)[idx].mean(axis=0), np.float32(1e-3)).astype(np.float32)


def _recover_scene(x: np.ndarray, airlight: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Inverts the scattering model ``I = J·t + A·(1 − t)`` for ``J``."""
    return _to_uint8((x - airlight) / t[:, :, None] + airlight)


def dcp_dehaze(
    img: np.ndarray,
    patch: int = DCP_PATCH,
    omega: float = DCP_OMEGA,
    t_min: float = DCP_T_MIN,
    top_fraction: float = DCP_TOP_FRACTION,
    radius: int = DCP_GUIDED_RADIUS,
    eps: float = DCP_GUIDED_EPS,
) -> np.ndarray:
    """Dark-channel-prior dehazing with guided-filter refinement of the transmission."""
    x = _to_float(img)
    dark = _dark_channel(x, patch)
    airlight = _airlight(x, dark, top_fraction)
    t = 1.0 - omega * _dark_channel(x / airlight, patch)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    t = np.clip(guided_filter(grey, t, radius, eps), t_min, 1.0)
    return _recover_scene(x, airlight, t)


def cap_dehaze(
    img: np.ndarray,
    coefficients: tuple[float, float, float] = CAP_THETA,
    beta: float = CAP_BETA,
    patch: int = CAP_PATCH,
    t_min: float = CAP_T_MIN,
    top_fraction: float = DCP_TOP_FRACTION,
    radius: int = DCP_GUIDED_RADIUS,
    eps: float = DCP_GUIDED_EPS,
) -> np.ndarray:
    """Colour attenuation prior dehazing (Zhu, Mai, Shao, TIP 2015).

    Scene depth is linear in value and saturation, ``d = θ0 + θ1·v − |θ2|·s``; it is eroded
    (local minimum) and refined by a guided filter; ``t = exp(−β·d)``; the airlight is the mean
    colour of the deepest ``top_fraction`` of pixels.
    """
    x = _to_float(img)
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    theta0, theta1, theta2 = coefficients
    depth = theta0 + theta1 * hsv[:, :, 2] + theta2 * hsv[:, :, 1]
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    depth = cv2.erode(depth, kernel, borderType=cv2.BORDER_REFLECT)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    depth = guided_filter(grey, depth, radius, eps)
    airlight = _airlight(x, depth, top_fraction)
    t = np.clip(np.exp(-beta * depth), t_min, 1.0).astype(np.float32)
    return _recover_scene(x, airlight, t)


# ===================================================================================================
# blur
# ===================================================================================================
def motion_kernel(radius: int, sigma: float, angle_deg: float) -> np.ndarray:
    """One-sided Gaussian streak (docs/method.md §2's shifted-sum construction) as a (2·w+1)² kernel.

    Tap ``i`` (weight ∝ exp(−i²/2σ²), i = 0..2·radius) sits at offset ``i`` along ``angle_deg``
    (degrees, x right, y down, rounded like imagecorruptions' shifts). float32, sums to 1.
    """
    width = 2 * radius + 1
    taps = np.exp(-(np.arange(width, dtype=np.float64) ** 2) / (2.0 * sigma * sigma))
    taps /= taps.sum()
    size = 2 * width + 1
    kernel = np.zeros((size, size), np.float64)
    s, c = math.sin(math.radians(angle_deg)), math.cos(math.radians(angle_deg))
    for i, w in enumerate(taps):
        dy = math.ceil(i * s - 0.5)
        dx = math.ceil(i * c - 0.5)
        kernel[width + dy, width + dx] += w
    return kernel.astype(np.float32)


def disk_kernel(radius: float, alias_sigma: float = DEFOCUS_ALIAS_SIGMA) -> np.ndarray:
    """Normalised disk of ``radius`` on the grid −8..8 smoothed by a 3×3 Gaussian (docs/method.md §2)."""
    r = np.arange(-8, 9, dtype=np.float32)
    xx, yy = np.meshgrid(r, r)
    k = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    k /= k.sum()
    if alias_sigma > 0:
        k = cv2.GaussianBlur(k, (3, 3), alias_sigma)
    return k / k.sum()


def _psf_to_otf(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    padded = np.zeros(shape, np.float32)
    kh, kw = kernel.shape
    padded[:kh, :kw] = kernel
    padded = np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return np.fft.rfft2(padded)


def wiener_deconvolve(img: np.ndarray, kernel: np.ndarray, nsr: float, pad: int = DECONV_PAD) -> np.ndarray:
    """Wiener deconvolution per channel, with reflection padding against wrap-around.

    Args:
        img: uint8 RGB H×W×3.
        kernel: float32 PSF summing to 1, odd sides.
        nsr: noise-to-signal power ratio (regularisation), > 0.
    Returns:
        uint8 RGB H×W×3.
    """
    if nsr <= 0:
        raise ValueError(f"nsr must be positive, got {nsr}")
    pad = max(pad, kernel.shape[0])
    x = cv2.copyMakeBorder(_to_float(img), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    otf = _psf_to_otf(kernel, x.shape[:2])
    gain = np.conj(otf) / (np.abs(otf) ** 2 + nsr)
    out = np.empty_like(x)
    for c in range(3):
        out[:, :, c] = np.fft.irfft2(np.fft.rfft2(x[:, :, c]) * gain, s=x.shape[:2])
    return _to_uint8(out[pad:-pad, pad:-pad])


def richardson_lucy(img: np.ndarray, kernel: np.ndarray, iterations: int, pad: int = DECONV_PAD) -> np.ndarray:
    """Richardson–Lucy deconvolution per channel (FFT convolutions, reflection padding).

    Args:
        img: uint8 RGB H×W×3.
        kernel: float32 PSF summing to 1, odd sides.
        iterations: number of multiplicative updates (more = sharper and noisier).
    Returns:
        uint8 RGB H×W×3.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    pad = max(pad, kernel.shape[0])
    x = cv2.copyMakeBorder(_to_float(img), pad, pad, pad, pad, cv2.BORDER_REFLECT) + np.float32(1e-3)
    shape = x.shape[:2]
    otf = _psf_to_otf(kernel, shape)
    out = np.empty_like(x)
    for c in range(3):
        observed = x[:, :, c]
        est = observed.copy()
        for _ in range(iterations):
            reblurred = np.fft.irfft2(np.fft.rfft2(est) * otf, s=shape)
            ratio = observed / np.maximum(reblurred, 1e-4)
            est = est * np.fft.irfft2(np.fft.rfft2(ratio) * np.conj(otf), s=shape)
        out[:, :, c] = est
    return _to_uint8(out[pad:-pad, pad:-pad] - 1e-3)


def estimate_motion_angle(img: np.ndarray, angles: tuple[int, ...] = MOTION_ANGLES) -> float:
    """Blur direction in degrees: the one along which directional derivatives are weakest."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    sxx, syy, sxy = float((gx * gx).mean()), float((gy * gy).mean()), float((gx * gy).mean())
    energies = []
    for a in angles:
        c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
        energies.append(c * c * sxx + s * s * syy + 2 * c * s * sxy)
    return float(angles[int(np.argmin(energies))])


def normalised_sparsity(img: np.ndarray) -> float:
    """``‖∇y‖₁ / ‖∇y‖₂`` of the luma (Krishnan et al., CVPR 2011): lower for sharp images, higher
    for blurred ones and for ringing or ghosting left by a wrong deconvolution kernel."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = np.diff(grey, axis=1)[:-1]
    gy = np.diff(grey, axis=0)[:, :-1]
    mag = np.sqrt(gx * gx + gy * gy)
    return float(mag.sum() / max(float(np.sqrt((mag * mag).sum())), 1e-6))


def estimate_motion_direction(
    img: np.ndarray,
    radius: int = MOTION_RADIUS,
    sigma: float = MOTION_SIGMA,
    nsr: float = MOTION_NSR,
    offsets: tuple[float, ...] = MOTION_REFINE_OFFSETS,
) -> float:
    """Direction of a one-sided motion blur in degrees [0, 360).

    :func:`estimate_motion_angle` gives the axis; the axis ± ``offsets`` in both senses (a
    one-sided streak is not symmetric) are tried by Wiener-deconvolving the luma, and the one
    whose result has the lowest :func:`normalised_sparsity` wins (a wrong sense doubles the
    kernel's phase and leaves ghosts; a wrong axis leaves blur).
    """
    axis = estimate_motion_angle(img)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    grey3 = np.repeat(grey[:, :, None], 3, axis=2)
    candidates = [(axis + sense + off) % 360.0 for sense in (0.0, 180.0) for off in offsets]
    scores = [normalised_sparsity(wiener_deconvolve(grey3, motion_kernel(radius, sigma, a), nsr)) for a in candidates]
    return float(candidates[int(np.argmin(scores))])


def wiener_motion_deblur(img: np.ndarray, radius: int = MOTION_RADIUS, sigma: float = MOTION_SIGMA, nsr: float = MOTION_NSR) -> np.ndarray:
    """Wiener deconvolution with a one-sided motion kernel along :func:`estimate_motion_direction`."""
    direction = estimate_motion_direction(img, radius, sigma, nsr)
    return wiener_deconvolve(img, motion_kernel(radius, sigma, direction), nsr)


def rl_motion_deblur(img: np.ndarray, radius: int = MOTION_RADIUS, sigma: float = MOTION_SIGMA, iterations: int = RL_ITERATIONS) -> np.ndarray:
    """Richardson–Lucy with the one-sided motion kernel along :func:`estimate_motion_direction`."""
    direction = estimate_motion_direction(img, radius, sigma)
    return richardson_lucy(img, motion_kernel(radius, sigma, direction), iterations)


def estimate_defocus_radius(img: np.ndarray, radii: tuple[float, ...] = DEFOCUS_RADII, nsr: float = DEFOCUS_NSR) -> float:
    """Disk radius whose Wiener restoration of the luma has the lowest :func:`normalised_sparsity`
    (too small a radius leaves blur, too large a one rings; both raise it)."""
    scores = [normalised_sparsity(wiener_deconvolve(img, disk_kernel(r), nsr)) for r in radii]
    return float(radii[int(np.argmin(scores))])


def wiener_defocus_deblur(img: np.ndarray, radii: tuple[float, ...] = DEFOCUS_RADII, nsr: float = DEFOCUS_NSR) -> np.ndarray:
    """Wiener deconvolution with a disk PSF, the radius chosen by :func:`normalised_sparsity`."""
    outs = [wiener_deconvolve(img, disk_kernel(r), nsr) for r in radii]
    return min(outs, key=normalised_sparsity)


def unsharp_mask(img: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """``img + amount·(img − G_σ * img)``, clipped. uint8 RGB in and out."""
    x = img.astype(np.float32)
    blurred = cv2.GaussianBlur(x, (0, 0), sigma)
    return np.clip(x + amount * (x - blurred) + 0.5, 0, 255).astype(np.uint8)


def unsharp_defocus(img: np.ndarray, amount: float = UNSHARP_DEFOCUS[0], sigma: float = UNSHARP_DEFOCUS[1]) -> np.ndarray:
    """Unsharp masking tuned for the docs/method.md §2 defocus radii."""
    return unsharp_mask(img, amount, sigma)


# ===================================================================================================
# rain
# ===================================================================================================
def rain_opening(img: np.ndarray, length: int = RAIN_OPEN_LENGTH, threshold: int = RAIN_THRESHOLD) -> np.ndarray:
    """Streak removal: grey opening by a horizontal segment, applied where the pixel stands out.

    Streaks are added equally to all channels, so detection runs on the channel minimum (bright
    in every channel) and the opened value replaces the pixel only where the residual exceeds
    ``threshold`` (0-255), leaving textures that are not bright in all channels untouched.
    """
    se = cv2.getStructuringElement(cv2.MORPH_RECT, (length, 1))
    opened = cv2.morphologyEx(img, cv2.MORPH_OPEN, se, borderType=cv2.BORDER_REFLECT)
    residual = (img.astype(np.int16) - opened.astype(np.int16)).min(axis=2)
    mask = (residual > threshold)[:, :, None]
    return np.where(mask, opened, img)


def rain_median(img: np.ndarray, ksize: int = RAIN_MEDIAN, threshold: int = RAIN_THRESHOLD, length: int = RAIN_OPEN_LENGTH) -> np.ndarray:
    """Streak removal: detected streak pixels (as :func:`rain_opening`) replaced by a median of
    the opened image, which fills the gap from both sides of the streak."""
    se = cv2.getStructuringElement(cv2.MORPH_RECT, (length, 1))
    opened = cv2.morphologyEx(img, cv2.MORPH_OPEN, se, borderType=cv2.BORDER_REFLECT)
    residual = (img.astype(np.int16) - opened.astype(np.int16)).min(axis=2)
    mask = (residual > threshold).astype(np.uint8)
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))[:, :, None].astype(bool)
    filled = cv2.medianBlur(opened, ksize)
    return np.where(mask, filled, img)
