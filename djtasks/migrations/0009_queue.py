# Flow control (issue 14): run-time queue options, job-name concurrency limits and the rate limiter state.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("djtasks", "0008_claimed_at"),
    ]

    operations = [
        migrations.CreateModel(
            name="Queue",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[("queue", "queue"), ("job", "job")], default="queue", editable=False, max_length=8
                    ),
                ),
                ("name", models.CharField(editable=False, max_length=255)),
                (
                    "concurrency",
                    models.IntegerField(
                        blank=True,
                        help_text="at most this many jobs running at once across all workers; blank: no limit",
                        null=True,
                    ),
                ),
                (
                    "rate_limit",
                    models.CharField(
                        blank=True,
                        default="",
                        help_text="at most this many starts per window, e.g. 100/m, 10/s, 500/h",
                        max_length=32,
                    ),
                ),
                (
                    "paused",
                    models.BooleanField(
                        default=False, help_text="nothing starts; running jobs finish; enqueueing works"
                    ),
                ),
                ("overrides", models.JSONField(blank=True, default=list, editable=False)),
                ("rate_tat", models.DateTimeField(blank=True, editable=False, null=True)),
                ("updated_at", models.DateTimeField(blank=True, editable=False, null=True)),
            ],
            options={
                "db_table": "djtasks_queue",
                "permissions": [("pause_queue", "Can pause and resume queues")],
                "constraints": [
                    models.UniqueConstraint(fields=("kind", "name"), name="djtasks_queue_kind_name"),
                    models.CheckConstraint(
                        condition=models.Q(("kind__in", ["queue", "job"])), name="djtasks_queue_kind"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("concurrency__isnull", True), ("concurrency__gte", 1), _connector="OR"),
                        name="djtasks_queue_concurrency",
                    ),
                ],
            },
        ),
    ]
