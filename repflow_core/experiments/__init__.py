"""Reproducible experiments built on train/evaluate (ablations for the README)."""
