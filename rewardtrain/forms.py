from django import forms
from django.contrib.auth.models import User

from core.roles import LABELER
from labeling.models import Queue

from .models import PairDataset, TrainingRun


class PairDatasetForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="Letters, digits, - and _; each build adds a version.")
    queues = forms.ModelMultipleChoiceField(queryset=Queue.objects.all(), widget=forms.CheckboxSelectMultiple)
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    labelers = forms.ModelMultipleChoiceField(
        queryset=User.objects.filter(groups__name=LABELER).order_by("username"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Only these labelers' rankings; none ticked means everyone's.",
    )
    exclude_skipped = forms.BooleanField(required=False, label="Leave out prompts that someone skipped")
    exclude_flagged = forms.BooleanField(required=False, label="Leave out prompts with a flagged answer")
    source = forms.ChoiceField(
        choices=[("labelers", "Every labeler's ranking"), ("consensus", "One consensus ranking per prompt")],
        initial="labelers",
        required=False,
        widget=forms.RadioSelect,
        help_text="The consensus is the ranked-pairs consensus of the prompt's rankings (labeler_id 0 in the file).",
    )
    min_rankings = forms.IntegerField(
        required=False,
        min_value=1,
        help_text="Consensus only: leave out prompts ranked by fewer labelers (empty means 2).",
    )
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
    validation_fraction = forms.FloatField(initial=0.1, min_value=0.01, max_value=0.9)
    # The bounds of the IntegerField column it is stored in: beyond them the save was a DataError (500).
    seed = forms.IntegerField(initial=0, min_value=-(2**31), max_value=2**31 - 1)

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The date range ends before it starts.")
        if data.get("min_rankings") is not None and data.get("source") != "consensus":
            self.add_error("min_rankings", "Only a consensus source takes a minimum number of rankings.")
        return data

    def filters(self) -> dict:
        data = self.cleaned_data
        return {
            "date_from": data["date_from"].isoformat() if data.get("date_from") else None,
            "date_to": data["date_to"].isoformat() if data.get("date_to") else None,
            "labeler_ids": [user.pk for user in data.get("labelers") or []],
            "exclude_skipped": data.get("exclude_skipped", False),
            "exclude_flagged": data.get("exclude_flagged", False),
            "source": data.get("source") or "labelers",
            "min_rankings": data.get("min_rankings"),
            "min_agreement": data.get("min_agreement"),
            "min_gold_accuracy": data.get("min_gold_accuracy"),
        }


class TrainingRunForm(forms.ModelForm):
    class Meta:
        model = TrainingRun
        fields = ["dataset", "base_model", "max_length", "learning_rate", "epochs", "prompts_per_batch", "seed",
                  "use_margin"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = PairDataset.objects.filter(status="succeeded")
        self.fields["base_model"].initial = "minilm"
