import django.db.models.deletion
from django.db import migrations, models
from django.db.models import F, OuterRef, Q, Subquery


def copy_from_prompts(apps, schema_editor):
    Task = apps.get_model("labeling", "Task")
    Prompt = apps.get_model("labeling", "Prompt")
    prompt = Prompt.objects.filter(pk=OuterRef("prompt_id"))
    Task.objects.update(
        queue_id=Subquery(prompt.values("queue_id")),
        priority=Subquery(prompt.values("priority")),
        excluded=Subquery(prompt.values("excluded")),
    )


# A prompt's priority and exclusion, changed by whatever means (review decisions, the Django admin, a bulk
# update, SQL), reach its tasks' copies in the same statement.
TRIGGER = {
    "postgresql": [
        """
        CREATE FUNCTION labeling_prompt_order_to_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE labeling_task SET priority = NEW.priority, excluded = NEW.excluded WHERE prompt_id = NEW.id;
            RETURN NULL;
        END $$
        """,
        """
        CREATE TRIGGER labeling_prompt_order AFTER UPDATE OF priority, excluded ON labeling_prompt FOR EACH ROW
        WHEN (OLD.priority IS DISTINCT FROM NEW.priority OR OLD.excluded IS DISTINCT FROM NEW.excluded)
        EXECUTE FUNCTION labeling_prompt_order_to_tasks()
        """,
    ],
    "sqlite": [
        """
        CREATE TRIGGER labeling_prompt_order AFTER UPDATE OF priority, excluded ON labeling_prompt FOR EACH ROW
        WHEN OLD.priority IS NOT NEW.priority OR OLD.excluded IS NOT NEW.excluded
        BEGIN
            UPDATE labeling_task SET priority = NEW.priority, excluded = NEW.excluded WHERE prompt_id = NEW.id;
        END
        """,
    ],
}
DROP_TRIGGER = {
    "postgresql": [
        "DROP TRIGGER labeling_prompt_order ON labeling_prompt",
        "DROP FUNCTION labeling_prompt_order_to_tasks()",
    ],
    "sqlite": ["DROP TRIGGER labeling_prompt_order"],
}


def run(statements):
    def apply(apps, schema_editor):
        for statement in statements[schema_editor.connection.vendor]:
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):

    dependencies = [
        ("labeling", "0011_model_names_from_models_dir"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="queue",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.CASCADE, related_name="tasks", to="labeling.queue"
            ),
        ),
        migrations.AddField(
            model_name="task",
            name="priority",
            field=models.IntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="task",
            name="excluded",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.RunPython(copy_from_prompts, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="task",
            name="queue",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="tasks", to="labeling.queue"
            ),
        ),
        migrations.RunPython(run(TRIGGER), run(DROP_TRIGGER)),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                condition=Q(("excluded", False), ("gold_groups__isnull", True), ("submitted_count__lt", F("overlap"))),
                fields=["queue", "kind", "-priority", "prompt", "id"],
                name="task_open_in_order",
            ),
        ),
        migrations.RemoveIndex(model_name="assignment", name="assignment_labeler_status"),
        migrations.AddIndex(
            model_name="assignment",
            index=models.Index(fields=["labeler", "status", "task"], name="assignment_labeler_status"),
        ),
    ]
