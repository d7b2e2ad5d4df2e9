"""Datasets, video decoding, clip sampling and transforms."""
