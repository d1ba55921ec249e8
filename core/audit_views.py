"""The audit log page for admins: every admin and ML action, newest first, filtered (core.audit)."""
import json

from django import forms
from django.core.paginator import Paginator
from django.shortcuts import render

from .audit import ACTIONS, audit_events
from .models import AuditEvent
from .roles import ADMIN, role_required

PAGE_SIZE = 50


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(choices=[("", "Any action"), *ACTIONS.items()], required=False)
    actor = forms.CharField(max_length=150, required=False, label="Who", help_text="A username.")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_to"] < data["date_from"]:
            self.add_error("date_to", "“To” is before “From”.")
        return data


def _detail_lines(detail: dict) -> list[str]:
    """The event's detail as short lines; a queue edit's changes read "field: old → new"."""
    lines = []
    for key, value in detail.items():
        if key == "changes" and isinstance(value, dict):
            lines += [f"{field}: {_text(old)} → {_text(new)}" for field, (old, new) in value.items()]
        else:
            lines.append(f"{key}: {_text(value)}")
    return lines


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


@role_required(ADMIN)
def audit_log(request):
    form = AuditFilterForm(request.GET)
    # A bad filter shows its error and no events, rather than every event as if unfiltered.
    events = audit_events(**form.cleaned_data) if form.is_valid() else AuditEvent.objects.none()
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [(event, ACTIONS.get(event.action, event.action), _detail_lines(event.detail)) for event in page]
    return render(request, "core/audit.html", {"form": form, "page": page, "rows": rows})
