"""The labeling data model.

A queue holds prompts; a prompt holds up to nine sampled answers. Each prompt gets one Task per
kind of label the queue asks for (demonstration, ranking); a Task counts its submissions against
its overlap, and the database refuses more. An Assignment is one labeler's lease on one Task and,
once submitted, the link to the label (a Demonstration, or a Ranking with per-answer labels).
The jobs that sample answers with a language model (answer generation) are the reward-model side's records,
not these: that side builds on labeling, never the reverse.
"""
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from core.jobs import WorkerJob

MAX_ANSWERS = 9
MIN_RANKED_ANSWERS = 2


class TaskKind(models.TextChoices):
    DEMONSTRATION = "demonstration", "Write a demonstration"
    RANKING = "ranking", "Rank answers"


class Queue(models.Model):
    class Kinds(models.TextChoices):
        DEMONSTRATION = "demonstration", "Demonstrations"
        RANKING = "ranking", "Rankings"
        BOTH = "both", "Demonstrations and rankings"

    name = models.CharField(max_length=200, unique=True)
    instructions = models.TextField(blank=True, help_text="Markdown, shown to labelers above each task.")
    task_kind = models.CharField(max_length=20, choices=Kinds.choices, default=Kinds.RANKING)
    demonstration_overlap = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="How many different labelers write a demonstration for each prompt.",
    )
    ranking_overlap = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="How many different labelers rank the answers of each prompt.",
    )
    priority = models.IntegerField(default=0, help_text="Higher priority queues are served first.")
    lease_seconds = models.PositiveIntegerField(
        default=30 * 60,
        validators=[MinValueValidator(30), MaxValueValidator(7 * 24 * 3600)],
        help_text="How long a labeler holds a task before it may be handed to someone else.",
    )
    # The version of `instructions` now shown (InstructionsVersion keeps every earlier text).
    instructions_version = models.PositiveIntegerField(default=0, editable=False)
    is_open = models.BooleanField(default=True, help_text="Paused queues hand out no tasks.")
    gold_rate = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of a labeler's ranking tasks that are gold prompts, mixed in unannounced (0 to 0.5).",
    )
    gold_threshold = models.FloatField(
        default=0.7,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Labelers whose agreement with the gold rankings is below this are flagged for review.",
    )
    labelers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="labeling_queues",
        help_text="Labelers who may work on this queue. With no labelers and no groups, every labeler may.",
    )
    labeler_groups = models.ManyToManyField(Group, blank=True, related_name="labeling_queues")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def kinds(self) -> list[str]:
        if self.task_kind == self.Kinds.BOTH:
            return [TaskKind.DEMONSTRATION, TaskKind.RANKING]
        return [self.task_kind]

    def overlap_for(self, kind: str) -> int:
        return self.demonstration_overlap if kind == TaskKind.DEMONSTRATION else self.ranking_overlap


class InstructionsVersion(models.Model):
    """Every text a queue's instructions have had; each assignment records the version it was made under."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="instruction_versions")
    version = models.PositiveIntegerField()
    text = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["queue", "-version"]
        constraints = [models.UniqueConstraint(fields=["queue", "version"], name="instructions_version_once")]

    def __str__(self) -> str:
        return f"{self.queue} instructions v{self.version}"


class Prompt(models.Model):
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=200, blank=True, default="")
    # SHA-256 of the prompt and its answers: makes re-importing rows without an id idempotent.
    content_hash = models.CharField(max_length=64)
    text = models.TextField()
    meta = models.JSONField(default=dict, blank=True)
    priority = models.IntegerField(default=0)
    # Excluded prompts are handed to no labeler and left out of every dataset; PromptAction says why.
    excluded = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["queue", "external_id"], condition=~Q(external_id=""), name="prompt_unique_external_id"
            ),
            models.UniqueConstraint(
                fields=["queue", "content_hash"], condition=Q(external_id=""), name="prompt_unique_content"
            ),
        ]
        # The queue list counts each queue's excluded prompts: a few rows of this index, not every prompt.
        indexes = [models.Index(fields=["queue"], name="prompt_excluded", condition=Q(excluded=True))]

    def __str__(self) -> str:
        return self.external_id or f"prompt {self.pk}"


class Answer(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="answers")
    position = models.PositiveSmallIntegerField()
    text = models.TextField()
    model = models.CharField(max_length=200, blank=True, default="")
    meta = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["prompt", "position"], name="answer_unique_position")]

    def __str__(self) -> str:
        return f"answer {self.position + 1} of prompt {self.prompt_id}"


class Task(models.Model):
    """One kind of label wanted for one prompt, from `overlap` different labelers.

    `overlap` is the queue's overlap for the kind plus `extra_overlap`, the labels an admin asked for on
    top for this prompt. A ranking task with `gold_groups` (the reference ranking, tie groups of answer
    ids, best first) is a gold item: it is mixed into every labeler's stream once, at the queue's gold
    rate, and its labels count against no overlap.
    """

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=20, choices=TaskKind.choices)
    overlap = models.PositiveSmallIntegerField()
    extra_overlap = models.PositiveSmallIntegerField(default=0)
    submitted_count = models.PositiveSmallIntegerField(default=0)
    gold_groups = models.JSONField(null=True, blank=True)
    # Copies of the prompt's queue, priority and exclusion, so that one index holds each queue's open tasks
    # in the order they are handed out: the next task is found by reading that index from its start,
    # whatever the size of the queue. Set when the task is made; a database trigger (migration 0012)
    # copies every later change of the prompt's priority or exclusion.
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="tasks")
    priority = models.IntegerField(default=0, db_default=0)
    excluded = models.BooleanField(default=False, db_default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prompt", "kind"], name="task_unique_kind"),
            models.CheckConstraint(condition=Q(submitted_count__lte=F("overlap")), name="task_not_over_overlap"),
        ]
        indexes = [
            # The tasks that may still be handed out, in the order they are: highest priority, then oldest
            # prompt. Leaving the condition (full, excluded, made gold) takes a task out of the index.
            models.Index(
                fields=["queue", "kind", "-priority", "prompt", "id"],
                name="task_open_in_order",
                condition=Q(submitted_count__lt=F("overlap"), gold_groups__isnull=True, excluded=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} of prompt {self.prompt_id}"

    def save(self, *args, **kwargs):
        if self.queue_id is None:  # a task made one at a time (tests, the shell) copies its prompt's order
            self.queue_id, self.priority, self.excluded = (
                Prompt.objects.filter(pk=self.prompt_id).values_list("queue_id", "priority", "excluded").get()
            )
        super().save(*args, **kwargs)


class SkipReason(models.TextChoices):
    UNCLEAR = "unclear", "The prompt is unclear"
    HARMFUL = "harmful", "Harmful or upsetting content"
    NEEDS_EXPERTISE = "needs_expertise", "Needs expertise I do not have"
    OTHER = "other", "Other (say why)"


class Assignment(models.Model):
    """A labeler's lease on a task, and then its outcome (submitted or skipped)."""

    class Status(models.TextChoices):
        LEASED = "leased"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="assignments")
    labeler = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.LEASED)
    # The order in which this labeler is shown the answers (ids), drawn at random once.
    answer_order = models.JSONField(default=list, blank=True)
    leased_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # Time the page was visible to the labeler, measured in the browser and capped by the server.
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    # The queue's instructions version when the task was leased: the text the labeler was shown.
    instructions_version = models.PositiveIntegerField(null=True, blank=True)
    skip_reason = models.CharField(max_length=20, choices=SkipReason.choices, blank=True, default="")
    skip_note = models.TextField(blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "labeler"], name="assignment_once_per_labeler")]
        indexes = [
            models.Index(fields=["task", "status", "lease_expires_at"], name="assignment_task_status"),
            # With the task: the ids of a labeler's labels are read from the index alone (the next task).
            models.Index(fields=["labeler", "status", "task"], name="assignment_labeler_status"),
            # The queue list's live leases. A submit or skip leaves the condition, so it writes nothing here.
            models.Index(fields=["lease_expires_at", "task"], name="assignment_leased",
                         condition=Q(status="leased")),
        ]

    def __str__(self) -> str:
        return f"{self.task} for {self.labeler_id} ({self.status})"


class Demonstration(models.Model):
    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="demonstration")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"demonstration for {self.assignment_id}"


class Flag(models.TextChoices):
    """Per-answer flags, as in the InstructGPT labeling interface."""

    FAILS_INSTRUCTION = "fails_instruction", "Fails to follow the instruction"
    HALLUCINATION = "hallucination", "Hallucination / made-up facts"
    HARMFUL = "harmful", "Harmful or inappropriate"
    PERSONAL_DATA = "personal_data", "Contains personal data"
    WRONG_LANGUAGE = "wrong_language", "Not in the requested language"


class Ranking(models.Model):
    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="ranking")
    # Tie groups of answer ids, best first: [[3], [5, 7], [4]] ranks 3 first and ties 5 with 7.
    groups = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"ranking for {self.assignment_id}"


class AnswerLabel(models.Model):
    """One labeler's rating (1-7) and flags of one answer, part of a ranking."""

    ranking = models.ForeignKey(Ranking, on_delete=models.CASCADE, related_name="answer_labels")
    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="labels")
    rank = models.PositiveSmallIntegerField(help_text="1 is best; tied answers share a rank.")
    rating = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(7)]
    )
    flags = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ranking", "answer"], name="answer_label_once"),
            models.CheckConstraint(
                condition=Q(rating__isnull=True) | Q(rating__gte=1, rating__lte=7), name="rating_one_to_seven"
            ),
        ]

    def __str__(self) -> str:
        return f"label of answer {self.answer_id} in ranking {self.ranking_id}"


class PromptAction(models.Model):
    """An admin's decision about prompts (from the disagreement review or a bulk action), with the reason."""

    class Kind(models.TextChoices):
        EXCLUDE = "exclude", "Excluded from datasets"
        INCLUDE = "include", "Included again"
        RAISE_OVERLAP = "raise_overlap", "Asked for more labels"
        REQUEUE = "requeue", "Re-queued"
        SET_GOLD = "set_gold", "Made a gold item"
        CLEAR_GOLD = "clear_gold", "No longer a gold item"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    reason = models.TextField()
    detail = models.JSONField(default=dict, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.prompt}"


# --- Stored agreement figures (labeling.quality.aggregates): each prompt's counts, and their sums per labeler pair,
# per labeler and per queue, kept up to date by the worker as rankings arrive, so the admin pages read rows
# instead of computing labeling.quality.report.queue_agreement from every label on each request.


class QueueAgreementTotals(models.Model):
    """A queue's pooled agreement (sums of its PromptAgreement rows) and its stored bootstrap interval."""

    queue = models.OneToOneField(Queue, on_delete=models.CASCADE, primary_key=True, related_name="agreement_totals")
    agree = models.BigIntegerField(default=0)
    n = models.BigIntegerField(default=0)
    prompts = models.PositiveIntegerField(default=0, help_text="Prompts ranked by two or more labelers.")
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    counted_at = models.DateTimeField(null=True, blank=True, help_text="When the last ranking was counted.")
    intervals_at = models.DateTimeField(null=True, blank=True, help_text="When the intervals were drawn.")
    intervals_n = models.BigIntegerField(default=0, help_text="The pairs counted when the intervals were drawn.")
    intervals_seconds = models.FloatField(default=0, help_text="How long the last draw took.")
    rebuilt_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"agreement of queue {self.queue_id}"


class AgreementBacklog(models.Model):
    """A prompt whose rankings changed since its stored figures were counted: written in the transaction that
    stores the ranking, so no count waits on the broker, and removed by the worker that counts it again. A row per
    ranking, not per prompt: a submit never waits for a worker that is removing its prompt's row (the worker takes
    KEY SHARE locks on the labelers' rows, which the submit holds)."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="+", db_index=False)
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="+", db_index=False)

    class Meta:
        indexes = [models.Index(fields=["queue", "id"], name="agreement_backlog_queue")]

    def __str__(self) -> str:
        return f"prompt {self.prompt_id} to count again"


class QueueWork(models.Model):
    """A queue's finished work, counted from its assignments by the draw of
    labeling.quality.aggregates.refresh_intervals, so that the queue list reads one row instead of every assignment:
    labels per day, median seconds per submitted task and skip rate (every task kind), and what the tasks' counters
    missed (see labeling.queues.selectors)."""

    queue = models.OneToOneField(Queue, on_delete=models.CASCADE, primary_key=True, related_name="work")
    finished = models.BigIntegerField(default=0, help_text="Submitted and skipped assignments.")
    skipped = models.BigIntegerField(default=0)
    median_ms = models.FloatField(null=True, blank=True, help_text="Median time spent per submitted task.")
    # {"YYYY-MM-DD": submitted labels, gold included}: every dashboard day up to the day of the draw.
    labels_per_day = models.JSONField(default=dict)
    # The sum of the queue's Task.submitted_count then: when it has moved, the queue list asks for a draw.
    submitted_count = models.BigIntegerField(default=0)
    # {kind: submitted labels of regular tasks minus those tasks' submitted_count}: labels a counter does not
    # hold (a prompt ranked while it was gold, then made a regular one again) or holds no more (a labeler deleted).
    uncounted_labels = models.JSONField(default=dict)
    drawn_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"work of queue {self.queue_id}"


class PromptAgreement(models.Model):
    """One prompt's counts: its rankings, and agreement pooled over its labeler pairs (the review list's order)."""

    prompt = models.OneToOneField(Prompt, on_delete=models.CASCADE, primary_key=True, related_name="agreement")
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="+")
    rankings = models.PositiveSmallIntegerField()
    agree = models.IntegerField()
    n = models.IntegerField()
    rate = models.FloatField(null=True, blank=True)  # agree / n; null when every pair was tied by someone
    pairs = models.JSONField(default=list)  # [labeler_a, labeler_b, agree, n] per pair: what a change takes back

    class Meta:
        indexes = [
            # The disagreement review: lowest rate first, undefined last, read a page at a time.
            models.Index(fields=["queue", "rate", "prompt"], name="prompt_agreement_review",
                         condition=Q(rankings__gte=2)),
        ]

    def __str__(self) -> str:
        return f"agreement of prompt {self.prompt_id}"


class PromptLabelerAgreement(models.Model):
    """One ranking's counts: agreement with the prompt's other labelers and with their consensus."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="+")
    labeler = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="+", db_index=False)
    agree = models.IntegerField()
    n = models.IntegerField()
    consensus_agree = models.IntegerField()
    consensus_n = models.IntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prompt", "labeler"], name="prompt_labeler_agreement_once")]
        indexes = [models.Index(fields=["queue", "labeler", "prompt"], name="prompt_labeler_agreement_queue")]

    def __str__(self) -> str:
        return f"agreement of labeler {self.labeler_id} on prompt {self.prompt_id}"


class LabelerPairAgreement(models.Model):
    """Two labelers' agreement over the prompts of a queue both ranked (labeler_a < labeler_b)."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="+", db_index=False)
    labeler_a = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    labeler_b = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Plain integers, no CHECK (x >= 0): PostgreSQL checks an upsert's proposed row, whose deltas may be negative.
    prompts = models.IntegerField(default=0)
    agree = models.BigIntegerField(default=0)
    n = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["queue", "labeler_a", "labeler_b"], name="labeler_pair_agreement_once")
        ]

    def __str__(self) -> str:
        return f"agreement of labelers {self.labeler_a_id} and {self.labeler_b_id} in queue {self.queue_id}"


class LabelerAgreement(models.Model):
    """A labeler's agreement in a queue: with the others, with the others' consensus, its interval, and work."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="+", db_index=False)
    labeler = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    rankings = models.IntegerField(default=0)  # no CHECK, as above
    agree = models.BigIntegerField(default=0)
    n = models.BigIntegerField(default=0)
    consensus_agree = models.BigIntegerField(default=0)
    consensus_n = models.BigIntegerField(default=0)
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    # Drawn with the intervals, from the labeler's finished ranking tasks of the queue: the labeler table's work.
    # db_default: the upserts of labeling.quality.aggregates leave it out
    skips = models.IntegerField(default=0, db_default=0)
    median_ms = models.FloatField(null=True, blank=True, help_text="Median time spent per submitted ranking.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["queue", "labeler"], name="labeler_agreement_once")]

    def __str__(self) -> str:
        return f"agreement of labeler {self.labeler_id} in queue {self.queue_id}"


class ImportJob(WorkerJob):
    """A file uploaded in the browser, imported by the worker (labeling.importing.run_import)."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="import_jobs")
    file = models.FileField(upload_to="imports/%Y/%m/")
    original_name = models.CharField(max_length=255)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    created_count = models.PositiveIntegerField(default=0)
    existing_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import of {self.original_name} ({self.status})"

    @classmethod
    def failure_fields(cls, reason: str) -> dict:
        return {"errors": [{"line": 0, "reason": reason}]}  # the job's report lists problems by line


class ExportSnapshot(WorkerJob):
    """One export of a dataset (sft, comparisons or pairs) as a frozen, versioned file with its card.

    Versions count up per name (support-pairs-v1, -v2, …). The worker (labeling.datasets.exports) writes the
    file under ARTIFACTS_DIR/exports/<name>-v<version>/ and records its rows and SHA-256; the file never
    changes afterwards. `filters` are as asked, checked (labeling.datasets.filters.clean_export_filters).
    """

    class Dataset(models.TextChoices):
        SFT = "sft", "sft: demonstrations"
        COMPARISONS = "comparisons", "comparisons: every ranking per prompt"
        PAIRS = "pairs", "pairs: chosen / rejected"

    class Format(models.TextChoices):
        JSONL = "jsonl", "JSONL"
        CSV = "csv", "CSV"
        PARQUET = "parquet", "Parquet"

    name = models.SlugField(max_length=100)
    version = models.PositiveIntegerField()
    dataset = models.CharField(max_length=20, choices=Dataset.choices)
    format = models.CharField(max_length=10, choices=Format.choices)
    queues = models.ManyToManyField(Queue, related_name="export_snapshots")
    filters = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    # Paths under ARTIFACTS_DIR: the data file and its dataset card (README.md).
    file = models.CharField(max_length=500, blank=True, default="")
    card = models.CharField(max_length=500, blank=True, default="")
    rows = models.PositiveBigIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # When the retention rule (EXPORT_RETENTION_DAYS, labeling.datasets.exports.prune_exports) deleted the file and
    # card, and the days it kept them then: the record stays, saying why there is nothing to download.
    expired_at = models.DateTimeField(null=True, blank=True)
    retention_days = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="export_snapshot_version")]

    def __str__(self) -> str:
        return f"{self.name}-v{self.version}"
