"""Serving on Triton Inference Server: model logic, repository generator, server helper, client.

* :mod:`restore_r1.serving.backend` — the python-backend models (one per tool, the policy, the
  agent as a BLS loop); the ``model.py`` files in ``triton_models/`` are three-line shells.
* :mod:`restore_r1.serving.repository` — writes ``triton_models/`` from the tool catalogue.
* :mod:`restore_r1.serving.server` — starts/stops a local ``tritonserver`` (``make serve``).
* :mod:`restore_r1.serving.client` — ``restore-r1 restore --triton-url``.
* :mod:`restore_r1.serving.metrics` — the agent's metric names (on Triton's ``/metrics``).

Nothing here imports ``triton_python_backend_utils`` or ``tritonclient`` at module level.
"""
