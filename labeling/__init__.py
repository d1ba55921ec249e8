"""Prompt queues, sampled answers, leases, demonstrations, rankings, reviews, agreement, imports and exports.

What every app shares (roles, the audit log, API tokens, login limits, the API base, text rules and Markdown
rendering) is in core; labeling builds on it. Its models, URLs, Celery tasks, API and the pure tie-group rules
(ranking) are at the top; the rest is a subpackage per concept:

- queues: queue settings, instructions versions and opening (services), prompt imports, the queue pages, the dashboard.
- assignment: tasks and leases, submitting and skipping (services), the labeler's queues and pages.
- quality: agreement maths (agreement, report), stored figures (aggregates), gold, review, agreement and review pages.
- datasets: the dataset filters and form, the labels through them (selectors), exports and their pages and API.

Answers come in through imports and the API; sampling them with a language model (answer generation) is
rewardtrain's, which builds on labeling: labeling imports none of it.
"""
