"""The shared kernel every app builds on, importing no other app and not the project shell.

Roles and the cached signed-in user (roles), the audit log (audit, the AuditEvent model, its page), API tokens
(the ApiToken model, tokens, their page), failed-login limits (login_limits), what every /api/v1/ endpoint shares
(api, throttles, jsonlimits), version numbering (versions), per-machine slots (slots), the worker-job lifecycle
(jobs: one status vocabulary, the abstract job models, sending a task once the transaction commits, ending or
failing a job, claiming it, its heartbeat and re-sending stale jobs) and text (text: plain-text rules, upload
suffixes, CSV cells, Markdown rendering).
"""
