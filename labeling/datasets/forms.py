"""The form both dataset pages start from: a name, the queues and the label filters.

The fields' own bounds give the browser its hints and name each bad field at once; the filter rules
themselves are labeling.datasets.filters', run in clean(), so a page can refuse nothing the service
would take and shows whatever the service refuses next to its field.
"""
from django import forms
from django.contrib.auth.models import User

from core.roles import LABELER

from ..models import Queue
from .filters import FilterError, clean_export_filters

# A filter key and the form field that asks for it, where they differ.
_FIELD_OF_KEY = {"labeler_ids": "labelers"}


class DatasetForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="Letters, digits, - and _; each build adds a version.")
    queues = forms.ModelMultipleChoiceField(queryset=Queue.objects.all(), widget=forms.CheckboxSelectMultiple)
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    labelers = forms.ModelMultipleChoiceField(
        queryset=User.objects.filter(groups__name=LABELER).order_by("username"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Only these labelers' labels; none ticked means everyone's.",
    )
    exclude_skipped = forms.BooleanField(required=False, label="Leave out prompts that someone skipped")
    exclude_flagged = forms.BooleanField(required=False, label="Leave out prompts with a flagged answer")
    min_agreement = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        help_text="Leave out labelers whose pooled pairwise agreement with the others in the queue is below this.",
    )
    min_gold_accuracy = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        help_text="Leave out labelers whose agreement with the queue's gold rankings is below this.",
    )

    def check_filters(self, filters: dict) -> dict:
        """The service's check of this form's filters (an export's here; pair datasets take more)."""
        return clean_export_filters(filters)

    def filters(self) -> dict:
        data = self.cleaned_data
        return {
            "date_from": data["date_from"].isoformat() if data.get("date_from") else None,
            "date_to": data["date_to"].isoformat() if data.get("date_to") else None,
            "labeler_ids": [user.pk for user in data.get("labelers") or []],
            "exclude_skipped": data.get("exclude_skipped", False),
            "exclude_flagged": data.get("exclude_flagged", False),
            "min_agreement": data.get("min_agreement"),
            "min_gold_accuracy": data.get("min_gold_accuracy"),
        }

    def clean(self):
        data = super().clean()
        try:
            self.check_filters(self.filters())
        except FilterError as error:
            field = _FIELD_OF_KEY.get(error.key, error.key)
            self.add_error(field if field in self.fields else None, str(error))
        return data
