from django import forms

from labeling.datasets.filters import clean_filters
from labeling.datasets.forms import DatasetForm
from labeling.models import Queue

from .models import GenerationJob, PairDataset, TrainingRun


class PairDatasetForm(DatasetForm):
    """A pair dataset: the label filters, the source (every labeler's ranking or a consensus) and the split."""

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
    validation_fraction = forms.FloatField(initial=0.1, min_value=0.01, max_value=0.9)
    # The bounds of the IntegerField column it is stored in: beyond them the save was a DataError (500).
    seed = forms.IntegerField(initial=0, min_value=-(2**31), max_value=2**31 - 1)
    field_order = ["name", "queues", "date_from", "date_to", "labelers", "exclude_skipped", "exclude_flagged", "source",
                   "min_rankings", "min_agreement", "min_gold_accuracy"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["labelers"].help_text = "Only these labelers' rankings; none ticked means everyone's."

    def check_filters(self, filters: dict) -> dict:
        return clean_filters(filters)

    def filters(self) -> dict:
        data = self.cleaned_data
        return super().filters() | {
            "source": data.get("source") or "labelers", "min_rankings": data.get("min_rankings"),
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


class GenerationJobForm(forms.ModelForm):
    class Meta:
        model = GenerationJob
        fields = ["queue", "model_name", "answers_per_prompt", "temperature", "top_p", "max_new_tokens", "seed"]
        labels = {"answers_per_prompt": "Answers per prompt (K)", "top_p": "Top-p", "max_new_tokens": "Max new tokens"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Sampled answers are there to be ranked; a demonstration-only queue has no use for them.
        self.fields["queue"].queryset = Queue.objects.exclude(task_kind=Queue.Kinds.DEMONSTRATION)
        self.fields["model_name"].initial = "smollm2"
