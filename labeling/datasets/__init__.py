"""Datasets out of the labels: the one set of filters that exports, pair datasets and their pages share (filters,
forms), the labels through them (selectors), and exports with their pages and API (exports, views)."""
