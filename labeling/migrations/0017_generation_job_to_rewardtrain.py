# GenerationJob now belongs to the reward-model app (its 0004_generation_job_from_labeling): gone from
# labeling's state only; its table stays, under the same name.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0016_move_to_core'),
        ('rewardtrain', '0004_generation_job_from_labeling'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='GenerationJob'),
            ],
            database_operations=[],
        ),
    ]
