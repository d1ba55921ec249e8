"""Prompt queues, sampled answers, leases, demonstrations, rankings and imports."""
