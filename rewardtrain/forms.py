from django import forms

from labeling.datasets.filters import clean_filters
from labeling.datasets.forms import DatasetForm
from labeling.models import Queue

from . import policies, sft_runs
from .models import EvaluationRound, GenerationJob, PairDataset, Policy, PolicyRun, RewardModel, TrainingRun


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
        fields = ["queue", "policy", "answers_per_prompt", "temperature", "top_p", "max_new_tokens", "seed"]
        labels = {"answers_per_prompt": "Answers per prompt (K)", "top_p": "Top-p", "max_new_tokens": "Max new tokens"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Sampled answers are there to be ranked; a demonstration-only queue has no use for them.
        self.fields["queue"].queryset = Queue.objects.exclude(task_kind=Queue.Kinds.DEMONSTRATION)
        self.fields["policy"].queryset = Policy.objects.filter(retired_at=None)
        self.fields["policy"].required = True
        self.fields["policy"].help_text = "A registered policy; each answer records which one wrote it."


class PolicyForm(forms.Form):
    """Register a base policy: the bundled SmolLM2 or tiny model, a MODELS_DIR directory or a cached Hub id."""

    source = forms.CharField(max_length=500, initial="smollm2", help_text=policies.SOURCE_HELP)
    name = forms.SlugField(
        max_length=100, required=False, help_text="Empty: from the source (smollm2 → smollm2-v1). Versions count up."
    )
    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_source(self):
        source = self.cleaned_data["source"].strip()
        try:
            policies.check_source(source)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None
        return source


class SFTRunForm(DatasetForm):
    """Fine-tune a policy on the demonstrations of chosen queues, filtered as exports are."""

    policy = forms.ModelChoiceField(queryset=Policy.objects.none(), help_text="The policy to start from.")
    validation_fraction = forms.FloatField(
        initial=0.1, min_value=0.01, max_value=0.9, help_text="Share of prompts held out."
    )
    seed = forms.IntegerField(initial=0, min_value=-(2**31), max_value=2**31 - 1)
    epochs = forms.IntegerField(initial=2, min_value=1, max_value=50)
    learning_rate = forms.FloatField(initial=5e-5, min_value=1e-7, max_value=1e-2)
    max_length = forms.IntegerField(initial=512, min_value=16, max_value=8192, help_text="Tokens of prompt + answer.")
    batch_size = forms.IntegerField(initial=4, min_value=1, max_value=256)
    lora = forms.BooleanField(required=False, label="LoRA adapters (for models that do not fit; merged at the end)")
    field_order = ["policy", "name", "queues"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["policy"].queryset = Policy.objects.filter(retired_at=None)
        self.fields["name"].label = "New policy's name"
        self.fields["name"].help_text = "Letters, digits, - and _; each run adds a version."
        self.fields["queues"].queryset = Queue.objects.exclude(task_kind=Queue.Kinds.RANKING)
        self.fields["labelers"].help_text = "Only these labelers' demonstrations; none ticked means everyone's."

    def hyperparameters(self) -> dict:
        return {key: self.cleaned_data[key] for key in sft_runs.HYPERPARAMETERS}


class PolicyRunForm(forms.ModelForm):
    """Optimise a policy: rejection sampling or RL against a reward model, or DPO on a pair dataset."""

    class Meta:
        model = PolicyRun
        fields = ["method", "policy", "output_name", "reward_model", "queues", "dataset", "reference", "algorithm",
                  "beta", "samples_per_prompt", "learning_rate", "epochs", "max_new_tokens", "temperature",
                  "evaluation_fraction", "seed"]  # fmt: skip
        labels = {"output_name": "New policy's name", "dataset": "Pair dataset (DPO)",
                  "queues": "Prompts of (RL, rejection sampling)"}  # fmt: skip
        widgets = {"queues": forms.CheckboxSelectMultiple, "method": forms.RadioSelect}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        usable = Policy.objects.filter(retired_at=None)
        self.fields["policy"].queryset = usable
        self.fields["reference"].queryset = usable
        self.fields["dataset"].queryset = PairDataset.objects.filter(status="succeeded")
        self.fields["output_name"].required = False
        self.fields["output_name"].help_text = "Empty: the policy's name and the method (smollm2-sft-rl)."
        self.fields["reward_model"].empty_label = "The active reward model"
        self.fields["method"].choices = PolicyRun.Method.choices  # no blank choice: one of the three
        self.fields["method"].initial = PolicyRun.Method.RL


class EvaluationRoundForm(forms.ModelForm):
    """A blinded comparison of policies on a fresh queue; the service (rewardtrain.evaluation) checks the rest and
    its refusals are shown on the form."""

    class Meta:
        model = EvaluationRound
        fields = ["name", "queue", "baseline", "policies", "answers_per_policy", "reward_model", "temperature", "top_p",
                  "max_new_tokens", "seed"]  # fmt: skip
        labels = {"policies": "Compared with the baseline", "top_p": "Top-p", "max_new_tokens": "Max new tokens"}
        widgets = {"policies": forms.CheckboxSelectMultiple}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].help_text = "Shown to ML staff only; labelers see the queue and its instructions."
        self.fields["queue"].queryset = Queue.objects.exclude(task_kind=Queue.Kinds.DEMONSTRATION)
        self.fields["queue"].help_text = (
            "Prompts no policy was trained on, with no answers yet: every prompt is answered by exactly these policies."
        )
        usable = Policy.objects.filter(retired_at=None)
        self.fields["baseline"].queryset = usable
        self.fields["baseline"].help_text = "Every other policy's win rate is against this one."
        self.fields["policies"].queryset = usable
        self.fields["answers_per_policy"].help_text = "Policies × answers per policy: 2 to 9 answers per prompt."
        self.fields["reward_model"].queryset = RewardModel.objects.all()
        active = RewardModel.objects.filter(is_active=True).values_list("pk", flat=True).first()
        self.fields["reward_model"].initial = active
        self.fields["reward_model"].empty_label = "None (no predicted win rate)"
