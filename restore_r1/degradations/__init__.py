"""The seven synthetic degradations and the 15 evaluation cases (docs/method.md §2, §3).

The package has the shape of every kind (tools, metrics, judges, encoders):

* :mod:`~restore_r1.degradations.catalogue` — :data:`DEGRADATIONS`, one :class:`Degradation`
  entry (a :class:`restore_r1.catalog.Entry`) per type of ``DEGRADATION_TYPES``, the
  :class:`Sampler` protocol and :func:`apply_degradation`;
* :mod:`~restore_r1.degradations.functions` — the pure functions with explicit parameters
  (``darken_gamma(img, g)``, ``motion_blur(img, radius, sigma, angle)``, ...) and the samplers
  ``sample_<name>(img, rng) -> (out, params)`` that draw the parameters from the
  docs/method.md §2 distributions with the given ``numpy.random.Generator``;
* :mod:`~restore_r1.degradations.cases` — the 15 cases of Table 4, chains and the list parsers.

Images are ``uint8`` RGB, H×W×3, in and out. This package knows nothing of tools, judges or the
policy.
"""

from __future__ import annotations

from restore_r1.degradations.cases import (
    CASES,
    NO_DEGRADATION,
    SETTINGS,
    Case,
    apply_case,
    apply_chain,
    cases_with,
    get_case,
    parse_cases,
    parse_degradations,
)
from restore_r1.degradations.catalogue import (
    DEGRADATIONS,
    Degradation,
    Sampler,
    apply_degradation,
)
from restore_r1.degradations.functions import (
    DARK_GAMMA_RANGE,
    DARK_LINEAR_RANGE,
    DARK_METHODS,
    DARK_SHIFT_RANGE,
    DEFOCUS_BLUR_LEVELS,
    DEFOCUS_GRID_HALF,
    GAUSSIAN_SIGMA_RANGE,
    HAZE_A_RANGE,
    HAZE_BETA_RANGE,
    JPEG_QUALITY_RANGE,
    MOTION_BLUR_ANGLE_RANGE,
    MOTION_BLUR_LEVELS,
    NOISE_TYPES,
    POISSON_SCALE_RANGE,
    RAIN_ANGLE_RANGE,
    RAIN_LENGTH_RANGE,
    RAIN_SEED_KERNEL,
    RAIN_STREAK_WIDTH,
    RAIN_VALUE_RANGE,
    Params,
    darken_gamma,
    darken_linear,
    darken_shift,
    defocus_blur,
    defocus_kernel,
    gaussian_noise,
    haze,
    jpeg_compress,
    jpeg_encode,
    motion_blur,
    motion_blur_kernel,
    poisson_noise,
    rain,
    rain_kernel,
    rain_layer,
    sample_dark,
    sample_defocus_blur,
    sample_haze,
    sample_jpeg,
    sample_motion_blur,
    sample_noise,
    sample_rain,
)

__all__ = [
    "CASES",
    "Case",
    "DARK_GAMMA_RANGE",
    "DARK_LINEAR_RANGE",
    "DARK_METHODS",
    "DARK_SHIFT_RANGE",
    "DEFOCUS_BLUR_LEVELS",
    "DEFOCUS_GRID_HALF",
    "DEGRADATIONS",
    "Degradation",
    "GAUSSIAN_SIGMA_RANGE",
    "HAZE_A_RANGE",
    "HAZE_BETA_RANGE",
    "JPEG_QUALITY_RANGE",
    "MOTION_BLUR_ANGLE_RANGE",
    "MOTION_BLUR_LEVELS",
    "NOISE_TYPES",
    "NO_DEGRADATION",
    "POISSON_SCALE_RANGE",
    "Params",
    "RAIN_ANGLE_RANGE",
    "RAIN_LENGTH_RANGE",
    "RAIN_SEED_KERNEL",
    "RAIN_STREAK_WIDTH",
    "RAIN_VALUE_RANGE",
    "SETTINGS",
    "Sampler",
    "apply_case",
    "apply_chain",
    "apply_degradation",
    "cases_with",
    "darken_gamma",
    "darken_linear",
    "darken_shift",
    "defocus_blur",
    "defocus_kernel",
    "gaussian_noise",
    "get_case",
    "haze",
    "jpeg_compress",
    "jpeg_encode",
    "motion_blur",
    "motion_blur_kernel",
    "parse_cases",
    "parse_degradations",
    "poisson_noise",
    "rain",
    "rain_kernel",
    "rain_layer",
    "sample_dark",
    "sample_defocus_blur",
    "sample_haze",
    "sample_jpeg",
    "sample_motion_blur",
    "sample_noise",
    "sample_rain",
]
