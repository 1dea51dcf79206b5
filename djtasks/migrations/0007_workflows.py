# Workflows, unique jobs and progress (issue 12): the djtasks_group table (chord counters), the parent link of
# a workflow step, the "waiting" status, and three partial indexes (waiting steps; group members; keyed jobs for
# unique_for).

import django.contrib.postgres.fields
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # The indexes are built CONCURRENTLY (outside a transaction) so migrating a busy queue never blocks enqueue.
    atomic = False

    dependencies = [
        ("djtasks", "0004_admin"),
    ]

    operations = [
        migrations.CreateModel(
            name="Group",
            fields=[
                ("id", models.UUIDField(editable=False, primary_key=True, serialize=False)),
                ("total", models.IntegerField()),
                ("remaining", models.IntegerField()),
                ("members", django.contrib.postgres.fields.ArrayField(base_field=models.UUIDField(), size=None)),
                ("on_success", models.JSONField(blank=True, null=True)),
                ("parent_id", models.UUIDField(blank=True, null=True)),
                ("created_at", models.DateTimeField()),
            ],
            options={
                "db_table": "djtasks_group",
            },
        ),
        migrations.AddField(
            model_name="job",
            name="parent_id",
            field=models.UUIDField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="job",
            name="status",
            field=models.CharField(
                choices=[
                    ("waiting", "waiting"),
                    ("queued", "queued"),
                    ("running", "running"),
                    ("succeeded", "succeeded"),
                    ("failed", "failed"),
                    ("cancelled", "cancelled"),
                ],
                max_length=16,
            ),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(condition=models.Q(("status", "waiting")), fields=["id"], name="djtasks_job_waiting"),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("group_id__isnull", False)), fields=["group_id"], name="djtasks_job_group"
            ),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("unique_key__isnull", False)),
                fields=["unique_key", "enqueued_at"],
                name="djtasks_job_unique_key",
            ),
        ),
    ]
