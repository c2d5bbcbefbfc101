"""Deployment helpers: the Helm chart, its Grafana dashboard and alerts, checked offline."""
