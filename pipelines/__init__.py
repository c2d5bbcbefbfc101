"""Kubeflow pipelines of Restore-R1 (compiled YAML committed beside them)."""
