# Issue 17: the enqueuing span's OpenTelemetry context travels in the job row (djtasks.tracing). A nullable column
# without a default: adding it rewrites nothing, and jobs enqueued outside a trace leave it NULL.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("djtasks", "0011_terminate_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="trace_context",
            field=models.JSONField(
                blank=True, null=True, help_text="the enqueuing span's trace context (W3C traceparent, tracestate)"
            ),
        ),
    ]
