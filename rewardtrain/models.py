"""Pair datasets, training runs, reward models, policies, SFT runs and answer generation jobs, as database records.

The heavy work (building a Parquet file, training, sampling answers) runs in Celery tasks (rewardtrain.tasks);
these records are how the pages, the API and the worker share its status, progress and results.
GenerationJob's table was made by the labeling app and keeps its name (db_table); 0004_generation_job_from_labeling
took it over without touching the database.
"""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from core.jobs import ResumableJob, WorkerJob
from labeling.models import MAX_ANSWERS, MIN_RANKED_ANSWERS, Queue


class PairDataset(WorkerJob):
    """A frozen snapshot of (labeler, prompt, chosen, rejected) pairs from chosen queues and filters."""

    name = models.SlugField(max_length=100, help_text="Versions count up per name: helpful-v1, helpful-v2, …")
    version = models.PositiveIntegerField()
    queues = models.ManyToManyField(Queue, related_name="pair_datasets")
    # As asked (labeling.datasets.filters.clean_filters): date_from / date_to (ISO dates, inclusive), labeler_ids,
    # exclude_skipped, exclude_flagged, source ("labelers" or "consensus"), min_rankings, min_agreement,
    # min_gold_accuracy.
    filters = models.JSONField(default=dict, blank=True)
    # What the filters left out when it was built: left_out_labelers ([{queue_id, labeler_id, filter, rate}])
    # and, for a consensus, prompts_with_too_few_rankings. The labelers depend on the data of the day.
    build_notes = models.JSONField(default=dict, blank=True)
    validation_fraction = models.FloatField(default=0.1, validators=[MinValueValidator(0.01), MaxValueValidator(0.9)])
    seed = models.IntegerField(default=0)
    error = models.TextField(blank=True, default="")
    file = models.CharField(max_length=500, blank=True, default="", help_text="Path under ARTIFACTS_DIR.")
    rows = models.PositiveIntegerField(default=0)
    train_rows = models.PositiveIntegerField(default=0)
    validation_rows = models.PositiveIntegerField(default=0)
    prompts = models.PositiveIntegerField(default=0)
    rankings = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="pair_dataset_version")]

    def __str__(self) -> str:
        return f"{self.name}-v{self.version}"


def validate_base_model(name: str) -> None:
    """Forms and API bodies refuse a base model the worker could not load (rewardtrain.ml.model_sources)."""
    from .runs import check_base_model  # runs imports these models

    try:
        check_base_model(name)
    except ValueError as error:
        raise ValidationError(str(error)) from None


class TrainingJob(ResumableJob):
    """A long training job (a reward-model run, an SFT run, a policy run): progress, the learning curve, the final
    metrics, the directory it wrote, and ML staff's request to cancel it."""

    progress_percent = models.FloatField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    eta_seconds = models.PositiveIntegerField(null=True, blank=True)
    history = models.JSONField(default=list, blank=True, help_text="Metrics per logged step.")
    metrics = models.JSONField(default=dict, blank=True, help_text="Final evaluation and baselines.")
    error = models.TextField(blank=True, default="")
    model_dir = models.CharField(max_length=500, blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


class TrainingRun(TrainingJob):
    dataset = models.ForeignKey(PairDataset, on_delete=models.PROTECT, related_name="runs")
    base_model = models.CharField(
        max_length=500,
        validators=[validate_base_model],
        help_text="“minilm” or “tiny” (no download), or the name of a model directory in MODELS_DIR.",
    )
    max_length = models.PositiveIntegerField(default=256, validators=[MinValueValidator(16), MaxValueValidator(4096)])
    learning_rate = models.FloatField(default=3e-5, validators=[MinValueValidator(1e-7), MaxValueValidator(1e-2)])
    epochs = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1), MaxValueValidator(100)])
    prompts_per_batch = models.PositiveSmallIntegerField(
        default=8, validators=[MinValueValidator(1), MaxValueValidator(512)]
    )
    seed = models.IntegerField(default=0)
    use_margin = models.BooleanField(default=False, help_text="Subtract the rank distance inside the loss.")

    class Meta(TrainingJob.Meta):
        pass

    def __str__(self) -> str:
        return f"run {self.pk} on {self.dataset}"


class RewardModel(models.Model):
    """A trained reward model in the registry; ML staff mark one as active."""

    run = models.OneToOneField(TrainingRun, on_delete=models.PROTECT, related_name="reward_model")
    name = models.CharField(max_length=200)
    path = models.CharField(max_length=500, help_text="Directory with save_pretrained files and the model card.")
    metrics = models.JSONField(default=dict, blank=True)
    bias_offset = models.FloatField(default=0)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_reward_model")
        ]

    def __str__(self) -> str:
        return self.name


class Policy(models.Model):
    """A causal language model in the policy registry: the base a team starts from, or what a run made of it.

    A base policy is loaded from its `source` (rewardtrain.policies.policy_files): a bundled name, a model
    directory in MODELS_DIR, a Hugging Face id already in this machine's cache, or a local directory that
    a site admin registered from the command line. A trained policy is loaded from `path`, the directory
    its run wrote; `parent`, `data_version` and `reward_model` say what made it.
    """

    class Kind(models.TextChoices):
        BASE = "base"
        SFT = "sft", "SFT"
        DPO = "dpo", "DPO"
        RL = "rl", "RL"
        REJECTION_SAMPLING = "rejection-sampling"

    name = models.SlugField(max_length=100, help_text="Versions count up per name: smollm2-v1, helpful-sft-v2, …")
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="children")
    source = models.CharField(max_length=500, help_text="What a base policy was registered from, as given.")
    path = models.CharField(max_length=500, blank=True, default="", help_text="The model directory, if fixed.")
    gguf_file = models.CharField(max_length=200, blank=True, default="")
    data_version = models.CharField(max_length=300, blank=True, default="", help_text="The data that trained it.")
    reward_model = models.ForeignKey(
        RewardModel, on_delete=models.PROTECT, null=True, blank=True, related_name="policies"
    )
    metrics = models.JSONField(default=dict, blank=True)
    description = models.TextField(blank=True, default="")
    retired_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="policy_version")]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return f"{self.name}-v{self.version}"

    @property
    def is_retired(self) -> bool:
        return self.retired_at is not None


class SFTRun(TrainingJob):
    """Supervised fine-tuning of a policy on the demonstrations of chosen queues (rewardtrain.sft)."""

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="sft_runs", help_text="The start.")
    queues = models.ManyToManyField(Queue, related_name="sft_runs")
    # The export filters (labeling.datasets.filters.clean_export_filters): dates, labelers, skips, flags.
    filters = models.JSONField(default=dict, blank=True)
    output_name = models.SlugField(max_length=100, help_text="The new policy's name; versions count up.")
    validation_fraction = models.FloatField(default=0.1, validators=[MinValueValidator(0.01), MaxValueValidator(0.9)])
    seed = models.IntegerField(default=0)
    epochs = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1), MaxValueValidator(50)])
    learning_rate = models.FloatField(default=5e-5, validators=[MinValueValidator(1e-7), MaxValueValidator(1e-2)])
    max_length = models.PositiveIntegerField(default=512, validators=[MinValueValidator(16), MaxValueValidator(8192)])
    batch_size = models.PositiveSmallIntegerField(default=4, validators=[MinValueValidator(1), MaxValueValidator(256)])
    lora = models.BooleanField(default=False, help_text="Train LoRA adapters (merged at the end), not all weights.")
    data_sha256 = models.CharField(max_length=64, blank=True, default="")
    previews = models.JSONField(default=list, blank=True, help_text="Validation prompts: base and new answers.")
    output = models.OneToOneField(
        Policy, on_delete=models.PROTECT, null=True, blank=True, related_name="made_by_sft_run"
    )

    class Meta(TrainingJob.Meta):
        verbose_name = "SFT run"

    def __str__(self) -> str:
        return f"SFT run {self.pk} of {self.policy}"


def _above_zero(value: float) -> None:
    if value <= 0:
        raise ValidationError("Must be greater than 0.")


class PolicyRun(TrainingJob):
    """Optimising a policy (normally an SFT one): best-of-N fine-tuning or online RL against a reward model, or
    DPO on a pair dataset (rewardtrain.policy_runs). It evaluates the result on prompts it did not train on."""

    class Method(models.TextChoices):
        REJECTION_SAMPLING = "rejection-sampling", "Rejection sampling (best-of-N, then fine-tune on the best)"
        RL = "rl", "Online RL against the reward model, KL to the reference"
        DPO = "dpo", "DPO on a pair dataset"

    class Algorithm(models.TextChoices):
        RLOO = "rloo", "RLOO"
        GRPO = "grpo", "GRPO"

    method = models.CharField(max_length=20, choices=Method.choices)
    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="policy_runs", help_text="The start.")
    reference = models.ForeignKey(
        Policy, on_delete=models.PROTECT, null=True, blank=True, related_name="reference_in_runs",
        help_text="The policy the KL term keeps it near; empty: the starting policy.",
    )  # fmt: skip
    reward_model = models.ForeignKey(
        RewardModel, on_delete=models.PROTECT, null=True, blank=True, related_name="policy_runs",
        help_text="Rejection sampling and RL: the reward; empty: the active reward model when asked for.",
    )  # fmt: skip
    dataset = models.ForeignKey(
        PairDataset, on_delete=models.PROTECT, null=True, blank=True, related_name="policy_runs",
        help_text="DPO: the pairs it trains on.",
    )  # fmt: skip
    # Rejection sampling and RL: the prompts of these queues (not excluded), split by prompt into training and
    # evaluation; DPO trains on its dataset's training pairs and evaluates on its validation prompts.
    queues = models.ManyToManyField(Queue, related_name="policy_runs", blank=True)
    output_name = models.SlugField(max_length=100, help_text="The new policy's name; versions count up.")
    algorithm = models.CharField(max_length=10, choices=Algorithm.choices, default=Algorithm.RLOO)
    beta = models.FloatField(
        default=0.05, validators=[MinValueValidator(0), MaxValueValidator(10)],
        help_text="RL: the KL penalty's weight; DPO: its temperature.",
    )  # fmt: skip
    samples_per_prompt = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(2), MaxValueValidator(64)],
        help_text="Rejection sampling: N of best-of-N; RL: answers per prompt in a group.",
    )  # fmt: skip
    learning_rate = models.FloatField(default=1e-6, validators=[MinValueValidator(1e-8), MaxValueValidator(1e-2)])
    epochs = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(50)])
    max_new_tokens = models.PositiveIntegerField(
        default=128, validators=[MinValueValidator(1), MaxValueValidator(1024)]
    )
    temperature = models.FloatField(default=1.0, validators=[_above_zero, MaxValueValidator(2.0)])
    evaluation_fraction = models.FloatField(
        default=0.2, validators=[MinValueValidator(0.01), MaxValueValidator(0.9)],
        help_text="Share of the prompts held out to evaluate on.",
    )  # fmt: skip
    seed = models.IntegerField(default=0)
    output = models.OneToOneField(
        Policy, on_delete=models.PROTECT, null=True, blank=True, related_name="made_by_policy_run"
    )

    class Meta(TrainingJob.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.method} run {self.pk} of {self.policy}"


class SamplingJob(ResumableJob):
    """A job that samples answers to a queue's prompts in the worker (a generation job, an evaluation round): the
    sampling settings, its progress over the prompts and the prompts that failed ([{"prompt_id", "error"}])."""

    # Sampling needs a temperature above 0 (0 would make all answers to a prompt the same).
    temperature = models.FloatField(default=0.8, validators=[_above_zero, MaxValueValidator(2.0)])
    top_p = models.FloatField(default=0.95, validators=[_above_zero, MaxValueValidator(1.0)])
    max_new_tokens = models.PositiveIntegerField(
        default=256, validators=[MinValueValidator(1), MaxValueValidator(1024)]
    )
    seed = models.PositiveIntegerField(default=0)
    prompts_total = models.PositiveIntegerField(default=0)
    prompts_done = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def progress_percent(self) -> float:
        return 100.0 * self.prompts_done / self.prompts_total if self.prompts_total else 0.0


class EvaluationRound(SamplingJob):
    """A blinded comparison of policies by labelers (rewardtrain.evaluation): each policy answers the prompts of a
    queue, the answers are ranked as any other task (shuffled per labeler, with no hint of their source), and the
    round reports each policy's win rate against the baseline with a prompt-bootstrap interval."""

    name = models.CharField(max_length=200)
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="evaluation_rounds")
    baseline = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="baseline_in_rounds")
    policies = models.ManyToManyField(Policy, related_name="evaluation_rounds", help_text="Besides the baseline.")
    reward_model = models.ForeignKey(
        RewardModel, on_delete=models.PROTECT, null=True, blank=True, related_name="evaluation_rounds",
        help_text="Its predicted win rate and its accuracy on the round's rankings are shown beside the labelers'.",
    )  # fmt: skip
    answers_per_policy = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_ANSWERS // 2)]
    )

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name or f"evaluation round {self.pk}"



def validate_generator_name(name: str) -> None:
    """The check a job's model name had before the policy registry (migration 0004 still names it)."""
    from .policies import check_generator_name  # policies imports these models

    try:
        check_generator_name(name)
    except ValueError as error:
        raise ValidationError(str(error)) from None


class GenerationJob(SamplingJob):
    """ML staff's request to sample answers with a language model for a queue's prompts that have none.

    The worker (rewardtrain.generation.run_generation_job) fills in the progress and the per-prompt
    errors ([{"prompt_id": ..., "error": ...}]); one prompt failing does not stop the job.
    """

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="generation_jobs")
    # Every new job samples from a registered policy; jobs from before the registry have only a model name.
    policy = models.ForeignKey(
        Policy, on_delete=models.PROTECT, null=True, blank=True, related_name="generation_jobs"
    )
    model_name = models.CharField(
        max_length=200, blank=True, default="", help_text="The policy's name; before the registry, the model's."
    )
    answers_per_prompt = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(MIN_RANKED_ANSWERS), MaxValueValidator(MAX_ANSWERS)]
    )

    class Meta:
        db_table = "labeling_generationjob"  # made by the labeling app before rewardtrain held it
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"generation job {self.pk} ({self.status})"

