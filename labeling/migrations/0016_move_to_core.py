# ApiToken and AuditEvent now belong to core (core/migrations/0001_initial.py): gone from labeling's state
# only; their tables stay, under the same names, as core's.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0015_agreement_backlog'),
        ('core', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='ApiToken'),
                migrations.DeleteModel(name='AuditEvent'),
            ],
            database_operations=[],
        ),
    ]
