from django.db import models


class Execution(models.Model):
    """One row per time a test job body ran: how tests count executions across processes."""

    job_id = models.UUIDField(null=True)
    label = models.CharField(max_length=100)
    attempt = models.IntegerField(default=0)
    pid = models.IntegerField(default=0)
    at = models.DateTimeField(auto_now_add=True)
