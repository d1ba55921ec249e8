"""Prompt queues, sampled answers, leases, demonstrations, rankings, reviews, agreement, imports and exports.

What every app shares (roles, the audit log, API tokens, login limits, the API base, text rules and Markdown
rendering) is in core; labeling builds on it.
"""
