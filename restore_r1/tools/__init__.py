"""Restoration tools: one catalogue (:data:`TOOLS`) and one lookup (:func:`get_tool`).

A tool maps a uint8 RGB H×W×3 image to one of the same shape and targets one degradation type.
The package has the shape of every kind (degradations, metrics, judges, encoders):

* :mod:`~restore_r1.tools.catalogue` — :data:`TOOLS` with every entry registered,
  :func:`get_tool`, :func:`list_tools`, :func:`tool_info`, :func:`weights_info`,
  :func:`add_weights` and the embedded tools' table (:func:`embedded_tools`);
* :mod:`~restore_r1.tools.base` — the :class:`Tool` entry (a :class:`restore_r1.catalog.Entry`)
  and the catalogue type;
* the implementations: :mod:`~restore_r1.tools.classic` (the embedded classical tools),
  :mod:`~restore_r1.tools.dncnn` (scico's DnCNN weights), :mod:`~restore_r1.tools.paper` and
  :mod:`~restore_r1.tools.substitutes` (the paper's models and our stand-ins, loaded by
  :mod:`~restore_r1.tools.checkpoints`, :mod:`~restore_r1.tools.neural` and
  :mod:`~restore_r1.tools.torchscript`), and :mod:`~restore_r1.tools.onnx_export`.
"""

from __future__ import annotations

from restore_r1.tools.base import TOOLS, Tool
from restore_r1.tools.catalogue import OWN_LICENCE, add_weights, embedded_tools, get_tool, list_tools, tool_info, weights_info

__all__ = ["OWN_LICENCE", "TOOLS", "Tool", "add_weights", "embedded_tools", "get_tool", "list_tools", "tool_info", "weights_info"]
