"""The queue form and the prompt import form of the queue pages."""
from django import forms
from django.contrib.auth.models import Group, User

from core.roles import ADMIN, LABELER, ML
from core.text import UPLOAD_SUFFIXES

from ..models import Queue


class QueueForm(forms.ModelForm):
    class Meta:
        model = Queue
        fields = [
            "name", "instructions", "task_kind", "demonstration_overlap", "ranking_overlap",
            "priority", "lease_seconds", "is_open", "gold_rate", "gold_threshold", "labelers", "labeler_groups",
        ]
        widgets = {
            "instructions": forms.Textarea(attrs={"rows": 8}),
            "labelers": forms.CheckboxSelectMultiple,
            "labeler_groups": forms.CheckboxSelectMultiple,
        }
        labels = {
            "is_open": "Open (uncheck to pause)",
            "lease_seconds": "Lease length (seconds)",
            "gold_rate": "Gold rate",
            "gold_threshold": "Gold agreement threshold",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        labelers = User.objects.filter(groups__name=LABELER, is_active=True)
        self.fields["labelers"].queryset = labelers.order_by("username")
        # Teams of labelers; the admin and ml role groups are not teams.
        self.fields["labeler_groups"].queryset = Group.objects.exclude(name__in=[ADMIN, ML]).order_by("name")


class ImportForm(forms.Form):
    file = forms.FileField(help_text="JSONL or CSV; see docs/importing.md for the format.")

    def __init__(self, *args, max_bytes: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_bytes = max_bytes

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > self.max_bytes:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes; the limit is {self.max_bytes:,} bytes."
            )
        if not upload.name.lower().endswith(UPLOAD_SUFFIXES):
            raise forms.ValidationError(
                f"Upload a .jsonl or .csv file: the name must end in {', '.join(UPLOAD_SUFFIXES)}."
            )
        return upload
