"""Library logic behind the Kubeflow pipeline: every component in ``components/`` is a thin shell
over one function of :mod:`restore_r1.pipeline.steps`; the gate, the reports and the Triton export
live in :mod:`~restore_r1.pipeline.gate`, :mod:`~restore_r1.pipeline.report` and
:mod:`~restore_r1.pipeline.serving`."""
