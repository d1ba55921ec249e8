"""Pairwise data, reward-model training, evaluation, the model registry and scoring (to come)."""
