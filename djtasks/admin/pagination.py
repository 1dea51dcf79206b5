"""Page counts that stay cheap on a job table of millions of rows.

Django's paginator runs ``SELECT COUNT(*)`` of the whole filtered list on every page view, which on a large
``djtasks_job`` reads the table (or an index) end to end. ``EstimatedCountPaginator`` asks the planner instead:
for the unfiltered list the table's row estimate (``pg_class.reltuples`` via ``store.job_count_estimate``), for a
filtered one the row estimate of its plan (``QuerySet.explain``). Only when the estimate is small is the exact
count taken, so short lists page exactly and long ones say "about N".
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from django.core.paginator import Paginator
from django.db.models import QuerySet

from ..cursors import django_store

EXACT_COUNT_BELOW = 10_000  # estimates under this are replaced by an exact COUNT(*)


def _plan_rows(queryset: Any) -> int | None:
    """The planner's row estimate for ``queryset`` (no rows are read)."""
    try:
        plan = json.loads(queryset.order_by().explain(format="json"))
    except (ValueError, TypeError):
        return None
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    """A paginator whose ``count`` is the planner's estimate when that is at least ``EXACT_COUNT_BELOW``.

    ``estimated`` tells whether ``count`` is an estimate (the pagination template then says "about").
    """

    estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):  # a list
            return len(queryset)
        if not queryset.query.where:
            estimate = django_store(queryset.db).job_count_estimate()
            if estimate is None:  # never analyzed: the planner still has a size-based guess
                estimate = _plan_rows(queryset)
        else:
            estimate = _plan_rows(queryset)
        if estimate is None or estimate < EXACT_COUNT_BELOW:
            return queryset.count()
        self.estimated = True
        return int(estimate)
