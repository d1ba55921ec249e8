# Worker jobs share one status vocabulary (core.jobs.JobStatus): only the choices change, so no SQL runs.

from django.db import migrations, models

STATUSES = [
    ("queued", "Queued"), ("running", "Running"), ("succeeded", "Succeeded"), ("failed", "Failed"),
    ("cancelled", "Cancelled"), ("expired", "Expired"),
]


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0017_generation_job_to_rewardtrain'),
    ]

    operations = [
        migrations.AlterField(
            model_name=model_name, name='status',
            field=models.CharField(choices=STATUSES, default='queued', max_length=20),
        )
        for model_name in ('exportsnapshot', 'importjob')
    ]
