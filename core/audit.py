"""The audit log: who did which admin or ML action, on what, from where (AuditEvent).

The services that make the change call `record` inside their own transaction, so an event exists
exactly when the change was committed. The client's address comes from the request being served:
AuditMiddleware keeps it for the length of the request, so services need no request argument.
"""
import ipaddress
from contextvars import ContextVar
from datetime import date, datetime, time

from django.conf import settings
from django.db import models
from django.utils import timezone

from .models import AuditEvent

# Every action the log records, with what the audit page calls it.
ACTIONS = {
    "queue.create": "Queue created",
    "queue.update": "Queue changed",
    "queue.pause": "Queue paused",
    "queue.open": "Queue opened",
    "import.request": "Import file uploaded",
    "import.push": "Prompts pushed (API)",
    "export.request": "Export requested",
    "export.expire": "Export file removed (retention)",
    "pair_dataset.request": "Pair dataset requested",
    "generation.request": "Answer generation requested",
    "run.request": "Training run requested",
    "run.cancel": "Training run cancelled",
    "model.activate": "Reward model activated",
    "policy.register": "Policy registered",
    "policy.retire": "Policy retired",
    "sft.request": "SFT run requested",
    "sft.cancel": "SFT run cancelled",
    "policy_run.request": "Policy run requested",
    "policy_run.cancel": "Policy run cancelled",
    "evaluation.request": "Evaluation round requested",
    "token.create": "API token created",
    "token.revoke": "API token revoked",
    # The review's decisions; each prompt's PromptAction keeps the reason too.
    "prompt.exclude": "Prompts excluded",
    "prompt.include": "Prompts included again",
    "prompt.raise_overlap": "More labels asked for",
    "prompt.requeue": "Prompts re-queued",
    "prompt.set_gold": "Gold item set",
    "prompt.clear_gold": "Gold item cleared",
}
MAX_DETAIL_TEXT = 300  # long texts (instructions) are cut: their full versions are kept elsewhere

_client_ip: ContextVar[str | None] = ContextVar("audit_client_ip", default=None)


def client_ip(request) -> str | None:
    """The client's address from settings.CLIENT_IP_HEADER (REMOTE_ADDR unless behind a proxy), if valid."""
    value = request.META.get(getattr(settings, "CLIENT_IP_HEADER", "REMOTE_ADDR"), "")
    # In an X-Forwarded-For list each proxy appends the address it saw: the last entry is the one our own
    # proxy wrote; the ones before it are whatever the client sent, so trusting them would let a client
    # pick its address (and its login failure count).
    value = value.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class AuditMiddleware:
    """Keeps the client's address while a request is served, for `record`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _client_ip.set(client_ip(request))
        try:
            return self.get_response(request)
        finally:
            _client_ip.reset(token)


def record(*, actor, action: str, target: models.Model | None = None, detail: dict | None = None,
           request=None) -> AuditEvent:  # fmt: skip
    """Write one event; call it in the transaction of the change. `request` overrides the address kept
    by AuditMiddleware."""
    if action not in ACTIONS:
        raise ValueError(f"Unknown audit action {action!r}; add it to core.audit.ACTIONS.")
    actor = actor if actor is not None and actor.is_authenticated else None
    return AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor else "",
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        detail=detail or {},
        ip_address=client_ip(request) if request is not None else _client_ip.get(),
    )


def snapshot(instance: models.Model, fields: list[str]) -> dict:
    """The values of `fields` (many-to-many as sorted ids), to compare before and after an edit."""
    values = {}
    for name in fields:
        field = instance._meta.get_field(name)
        if field.many_to_many:
            values[name] = sorted(getattr(instance, name).values_list("pk", flat=True)) if instance.pk else []
        else:
            values[name] = field.value_from_object(instance)
    return values


def changes(before: dict, after: dict) -> dict:
    """{field: [old, new]} for the fields whose value differs, long texts cut."""

    def cut(value):
        return value[:MAX_DETAIL_TEXT] + "…" if isinstance(value, str) and len(value) > MAX_DETAIL_TEXT else value

    return {name: [cut(before.get(name)), cut(value)] for name, value in after.items() if before.get(name) != value}


def audit_events(
    *, action: str = "", actor: str = "", date_from: date | None = None, date_to: date | None = None
) -> models.QuerySet:
    """Events newest first, narrowed by action, actor username and an inclusive date range (local dates)."""
    events = AuditEvent.objects.select_related("actor")
    if action:
        events = events.filter(action=action)
    if actor:
        events = events.filter(actor_name__iexact=actor)
    zone = timezone.get_current_timezone()
    if date_from:
        events = events.filter(created_at__gte=datetime.combine(date_from, time.min, tzinfo=zone))
    if date_to:
        events = events.filter(created_at__lte=datetime.combine(date_to, time.max, tzinfo=zone))
    return events
