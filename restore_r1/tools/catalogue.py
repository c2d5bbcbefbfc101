"""The restoration tool catalogue (docs/method.md §4): every tool is registered into :data:`TOOLS` here.

Public API: :func:`get_tool`, :func:`list_tools`, :func:`tool_info`. Paper tools come from
:mod:`restore_r1.tools.paper`; the embedded ones (no download, so that every degradation type has
at least two tools that run here) from :mod:`restore_r1.tools.classic` and, with weights shipped in
the package, :mod:`restore_r1.tools.dncnn`, chosen by measurement (``bench/tools_bench.py``,
``bench/dncnn_bench.py``); our stand-ins for paper models no loader knows from
:mod:`restore_r1.tools.substitutes` (they run once their authors' file is installed with
``restore-r1 weights add``).
"""

from __future__ import annotations

from pathlib import Path

from restore_r1 import DEGRADATION_TYPES
from restore_r1.tools import checkpoints, classic, dncnn
from restore_r1.tools.base import TOOLS, Tool
from restore_r1.tools.paper import paper_tools
from restore_r1.tools.substitutes import substitute_tools

#: Licence of the code in this package (the embedded tools are ours).
OWN_LICENCE = "Apache-2.0"


def _dncnn_tool(name: str, variant: str) -> Tool:
    # Our code (Apache-2.0) running scico's weights (BSD-3-Clause), as an SPDX expression.
    spec = dncnn.weight_spec(variant)
    runner = dncnn.DnCNNTool(variant, spec)
    depth = dncnn.variant_info(variant).depth
    description = f"scico's DnCNN ({depth} layers, σ input = {dncnn.SIGMA_SCALE:g}·estimated σ) on opponent colour planes, torch CPU"
    return Tool(name, "noise", "function", f"{OWN_LICENCE} AND {dncnn.DNCNN_SPDX}", False, description, fn=runner, weights=spec)


def embedded_tools() -> list[Tool]:
    """Tools that run here with no download, beyond the paper's brightening three."""
    f = "function"
    return [
        Tool("nlm_denoise", "noise", f, OWN_LICENCE, False, "non-local means (OpenCV), strength from the estimated σ", fn=classic.nlm_denoise),
        Tool("guided_denoise", "noise", f, OWN_LICENCE, False, "self-guided filter per channel, eps from the estimated σ", fn=classic.guided_denoise),
        _dncnn_tool("dncnn6_denoise", "6N"),
        _dncnn_tool("dncnn17_denoise", "17N"),
        Tool(
            "jpeg_dct_deblock",
            "jpeg",
            f,
            OWN_LICENCE,
            False,
            "shifted 8×8 DCT hard thresholding of luma (QF 20 table), guided chroma",
            fn=classic.jpeg_dct_deblock,
        ),
        Tool("jpeg_guided_deblock", "jpeg", f, OWN_LICENCE, False, "guided filter on luma, luma-guided chroma smoothing", fn=classic.jpeg_guided_deblock),
        Tool("dcp_dehaze", "haze", f, OWN_LICENCE, False, "dark channel prior with guided-filter transmission (He et al.)", fn=classic.dcp_dehaze),
        Tool("cap_dehaze", "haze", f, OWN_LICENCE, False, "colour attenuation prior depth, guided refinement (Zhu et al.)", fn=classic.cap_dehaze),
        Tool(
            "wiener_motion_deblur",
            "motion_blur",
            f,
            OWN_LICENCE,
            False,
            "Wiener deconvolution, estimated one-sided motion kernel",
            fn=classic.wiener_motion_deblur,
        ),
        Tool(
            "rl_motion_deblur", "motion_blur", f, OWN_LICENCE, False, "Richardson–Lucy (8 it.), estimated one-sided motion kernel", fn=classic.rl_motion_deblur
        ),
        Tool(
            "wiener_defocus_deblur",
            "defocus_blur",
            f,
            OWN_LICENCE,
            False,
            "Wiener deconvolution, disk radius chosen by gradient sparsity",
            fn=classic.wiener_defocus_deblur,
        ),
        Tool("unsharp_defocus", "defocus_blur", f, OWN_LICENCE, False, "unsharp masking (amount 1.0, σ 2.0)", fn=classic.unsharp_defocus),
        Tool("rain_opening", "rain", f, OWN_LICENCE, False, "bright thin streaks removed by a horizontal grey opening", fn=classic.rain_opening),
        Tool("rain_median", "rain", f, OWN_LICENCE, False, "detected streak pixels filled by a median of the opened image", fn=classic.rain_median),
    ]


def _register_all() -> None:
    if len(TOOLS):
        return
    for tool in [*paper_tools(), *embedded_tools(), *substitute_tools()]:
        TOOLS.register(tool.name, tool)


_register_all()


def get_tool(name: str) -> Tool:
    """The tool called ``name``.

    Raises:
        KeyError: unknown name; the message suggests close matches.
    """
    return TOOLS.get(name)


def list_tools(available_only: bool = False, degradation: str | None = None, paper: bool | None = None) -> list[Tool]:
    """Tools in catalogue order, filtered.

    Args:
        available_only: keep only tools that can run here.
        degradation: keep only tools targeting this type (one of ``DEGRADATION_TYPES``).
        paper: ``True`` for the paper's 28, ``False`` for the others, ``None`` for all.
    Raises:
        ValueError: unknown degradation.
    """
    if degradation is not None and degradation not in DEGRADATION_TYPES:
        raise ValueError(f"unknown degradation {degradation!r}; expected one of {DEGRADATION_TYPES}")
    tools = TOOLS.values()
    if degradation is not None:
        tools = [t for t in tools if t.degradation == degradation]
    if paper is not None:
        tools = [t for t in tools if t.paper == paper]
    if available_only:
        tools = [t for t in tools if t.available]
    return tools


def tool_info(tool: Tool | str) -> dict:
    """A JSON-ready description of ``tool`` (or of the tool called so)."""
    if isinstance(tool, str):
        tool = get_tool(tool)
    ok, reason = tool.availability()
    return {
        "name": tool.name,
        "degradation": tool.degradation,
        "paper": tool.paper,
        "backend": tool.backend,
        "licence": tool.licence,
        "available": ok,
        "reason": reason,
        "weights": tool.weights.filename if tool.weights else None,
        "source": tool.weights.source if tool.weights else None,
        "loader": tool.model.loader if tool.model else None,
        "description": tool.description,
    }


def weights_info(tool: Tool | str) -> dict:
    """What the neural ``tool`` needs, JSON-ready: the authors' file, where they publish it, where
    it goes in the weights folder, its licence, loader and call, and whether it is there.

    Raises:
        ValueError: the tool runs no weights file the user supplies (an embedded tool).
    """
    from restore_r1.weights import find_weights, weights_dir

    if isinstance(tool, str):
        tool = get_tool(tool)
    m = tool.model
    if m is None:
        raise ValueError(f"tool {tool.name!r} needs no weights file from the user ({tool.backend}, {tool.licence})")
    ok, reason = tool.availability()
    found = find_weights(tool.weights)
    return {
        "name": tool.name,
        "degradation": tool.degradation,
        "paper": m.paper,
        "loader": m.loader,
        "architecture": m.architecture,
        "model": m.model,
        "file": m.file,
        "url": m.url,
        "sha256": m.sha256,
        "licence": m.licence,
        "call": m.call.describe() if m.loader != "torchscript" else "the export's forward: float32 RGB N×3×H×W in [0, 1] -> same",
        "note": m.note,
        "path": str(weights_dir() / tool.weights.filename),
        "installed": str(found) if found else None,
        "available": ok,
        "reason": reason,
    }


def add_weights(path: str | Path, tool: str | None = None) -> tuple[Path, list[Tool], checkpoints.VerifiedFile]:
    """Verifies the weights file ``path`` for ``tool`` (or for the tools whose architecture
    spandrel detects in it) and installs it into the weights folder, atomically.

    Returns:
        ``(installed path, the tools that now have their file, what was verified)``.

    Raises:
        FileNotFoundError: no such file.
        KeyError: unknown tool (close matches suggested).
        ValueError: the tool needs no file; ``CheckpointError`` / ``ChecksumError`` (both
            ValueErrors): the file does not serve it (the message says why).
    """
    data, name = checkpoints.read_file(path)
    descriptor = None
    if tool is not None:
        chosen = get_tool(tool)
        if chosen.model is None:
            raise ValueError(f"tool {chosen.name!r} needs no weights file from the user ({chosen.backend}, {chosen.licence})")
        model = chosen.model
    else:
        loadable = [t.model for t in list_tools() if t.model is not None and t.model.loader != "torchscript"]
        descriptor, candidates = checkpoints.detect_models(data, name, loadable)
        model = checkpoints.choose_models(candidates, name)[0]
    verified = checkpoints.verify_checkpoint(data, model, name, descriptor)
    target = checkpoints.install_checkpoint(verified)
    served = [t for t in list_tools() if t.model is not None and t.weights.filename == model.weights.filename]
    return target, served, verified
