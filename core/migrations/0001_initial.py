# ApiToken and AuditEvent, made by the labeling app (0007_api_token, 0009_audit_event), now belong to core.
# State only: the tables keep their names (labeling_apitoken, labeling_auditevent), indexes and constraints,
# and the database is not touched; labeling's 0016_move_to_core removes them from labeling's state.

import django.core.serializers.json
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('labeling', '0015_agreement_backlog'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ApiToken',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(help_text='What the token is for, e.g. “nightly export script”.', max_length=100)),
                        ('key_hash', models.CharField(max_length=64, unique=True)),
                        ('prefix', models.CharField(max_length=12)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                        ('revoked_at', models.DateTimeField(blank=True, null=True)),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'labeling_apitoken',
                        'ordering': ['-created_at', '-pk'],
                    },
                ),
                migrations.CreateModel(
                    name='AuditEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('actor_name', models.CharField(blank=True, default='', max_length=150)),
                        ('action', models.CharField(help_text='A dotted name, e.g. queue.update or model.activate.', max_length=50)),
                        ('target_type', models.CharField(blank=True, default='', max_length=100)),
                        ('target_id', models.CharField(blank=True, default='', max_length=64)),
                        ('target_repr', models.CharField(blank=True, default='', max_length=200)),
                        ('detail', models.JSONField(blank=True, default=dict, encoder=django.core.serializers.json.DjangoJSONEncoder)),
                        ('ip_address', models.GenericIPAddressField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='audit_events', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'labeling_auditevent',
                        'ordering': ['-created_at', '-pk'],
                        'indexes': [models.Index(fields=['action', 'created_at'], name='audit_action_created')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
