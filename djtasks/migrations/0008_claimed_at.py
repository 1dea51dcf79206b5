# Issue 10: a claimed job is charged an attempt only once its function starts. started_at now means the
# function started (written by the worker in batches); claimed_at is when a worker took the row.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("djtasks", "0007_workflows"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="claimed_at",
            field=models.DateTimeField(
                blank=True, null=True, help_text="when a worker took it; started_at is when its function started"
            ),
        ),
        # Rows claimed before this migration were started at their claim as far as anyone can tell.
        migrations.RunSQL(
            "UPDATE djtasks_job SET claimed_at = started_at WHERE status = 'running'", migrations.RunSQL.noop
        ),
    ]
