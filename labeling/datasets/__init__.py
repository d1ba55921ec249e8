"""Datasets out of the labels: the one set of filters that exports, pair datasets and their pages share."""
