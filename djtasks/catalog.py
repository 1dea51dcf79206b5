"""What ``manage.py djtasks jobs`` prints: every registered job with where it goes, how it retries, its limits
and its schedules (definitions in code and settings, and rows in the database)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .conf import djtasks_settings
from .registry import registry
from .schedules import defined_schedules


@dataclass(frozen=True)
class JobInfo:
    name: str
    queue: str
    queue_from: str  # "ROUTES", "@job" or "DEFAULT_QUEUE": which rule chose the queue
    priority: int
    max_attempts: int
    retry: str  # "no retry", "backoff 1 s..600 s", "after 10 s"
    retry_on: list[str]
    time_limit: float | None
    soft_time_limit: float | None
    schedules: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _schedules_by_job() -> dict[str, list[str]]:
    from .models import Schedule

    found: dict[str, list[str]] = {}
    for d in defined_schedules(djtasks_settings.BEAT_SCHEDULE):
        timing = d.cron or (f"every {d.every:g} s" if d.every is not None else f"at {d.at}")
        found.setdefault(d.job, []).append(f"{d.name} ({timing}, {d.source})")
    seen = {(job, entry.split(" (")[0]) for job, entries in found.items() for entry in entries}
    rows = Schedule.objects.using(djtasks_settings.DATABASE).order_by("name")
    for row in rows.values_list("job_name", "name", "cron", "interval_seconds", "at", "enabled"):
        job, name, cron, every, at, enabled = row
        if (job, name) in seen:
            continue
        timing = cron or (f"every {every:g} s" if every is not None else f"at {at}")
        found.setdefault(job, []).append(f"{name} ({timing}, database{'' if enabled else ', disabled'})")
    return found


def job_catalog() -> list[JobInfo]:
    """Registered jobs by name, as this process sees them (its settings, its imported tasks modules)."""
    conf = djtasks_settings.get()
    schedules = _schedules_by_job()
    infos = []
    for job in sorted(registry.all(), key=lambda j: j.name):
        routed = conf.route(job.name)
        if routed:
            queue, queue_from = routed, "ROUTES"
        elif job.queue:
            queue, queue_from = job.queue, "@job"
        else:
            queue, queue_from = conf.DEFAULT_QUEUE, "DEFAULT_QUEUE"
        if job.max_attempts == 1:
            retry = "no retry"
        elif job.retry_backoff:
            retry = f"backoff {job.retry_backoff:g} s..{job.retry_backoff_max:g} s"
        else:
            retry = f"after {job.retry_delay:g} s"
        infos.append(
            JobInfo(
                name=job.name,
                queue=queue,
                queue_from=queue_from,
                priority=job.priority,
                max_attempts=job.max_attempts,
                retry=retry,
                retry_on=[f"{e.__module__}.{e.__qualname__}".removeprefix("builtins.") for e in job.retry_on],
                time_limit=job.time_limit,
                soft_time_limit=job.soft_time_limit,
                schedules=schedules.get(job.name, []),
            )
        )
    return infos


def format_catalog(infos: list[JobInfo]) -> str:
    """One block per job, for a terminal."""
    lines = []
    for info in infos:
        limits = ", ".join(
            f"{label} {value:g} s"
            for label, value in (("time_limit", info.time_limit), ("soft_time_limit", info.soft_time_limit))
            if value is not None
        )
        retry = info.retry if info.max_attempts == 1 else f"{info.retry} on {', '.join(info.retry_on)}"
        lines.append(info.name)
        lines.append(f"    queue {info.queue} (from {info.queue_from}), priority {info.priority}")
        lines.append(f"    attempts {info.max_attempts}: {retry}")
        lines.append(f"    limits: {limits or 'none'}")
        for schedule in info.schedules:
            lines.append(f"    schedule: {schedule}")
    lines.append(f"{len(infos)} registered job(s)")
    return "\n".join(lines) + "\n"
