"""Prompt queues, sampled answers, leases, demonstrations, rankings, reviews, agreement, imports and exports.

What every app shares (roles, the audit log, API tokens, login limits, the API base, text rules and Markdown
rendering) is in core; labeling builds on it. Answers come in through imports and the API; sampling them with a
language model (answer generation) is the reward-model side's, which builds on labeling: labeling imports none of it.
"""
