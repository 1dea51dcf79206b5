# The admin and queue dashboard (issue 6): the operator permissions, the dashboard's place in the app list,
# and one partial index for the admin's "failed"/"cancelled" filters.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # The index is built CONCURRENTLY (outside a transaction) so migrating a busy queue never blocks enqueue.
    atomic = False

    dependencies = [
        ("djtasks", "0003_schedule"),
    ]

    operations = [
        migrations.CreateModel(
            name="QueueDashboard",
            fields=[],
            options={
                "verbose_name": "queue dashboard",
                "verbose_name_plural": "queue dashboard",
                "proxy": True,
                "default_permissions": (),
                "indexes": [],
                "constraints": [],
            },
            bases=("djtasks.job",),
        ),
        migrations.AlterModelOptions(
            name="job",
            options={
                "permissions": [
                    ("retry_job", "Can retry failed or cancelled jobs"),
                    ("cancel_job", "Can cancel jobs"),
                    ("requeue_job", "Can requeue copies of finished jobs"),
                ]
            },
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("status__in", ["failed", "cancelled"])), fields=["id"], name="djtasks_job_problems"
            ),
        ),
    ]
