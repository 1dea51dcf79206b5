"""The benchmarks' own table: what the "real job" workload of ``bench/scale.py`` writes (one insert, one update)."""

from __future__ import annotations

from django.db import models


class Record(models.Model):
    """One row per real job run: inserted, then updated, by ``bench.workload.insert_and_update``."""

    n = models.IntegerField()
    done = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(null=True)
