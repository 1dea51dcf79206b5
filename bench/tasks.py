"""Jobs the benchmarks run."""

from djtasks import job


@job
def noop() -> None:
    """Does nothing: what is measured is the queue, not the job."""


@job
def sleep_for(seconds: float, marker: str = "") -> None:
    """Sleeps; first creates the file ``marker`` (if given), so a script sees it started without the database."""
    import time
    from pathlib import Path

    if marker:
        Path(marker).touch()
    time.sleep(seconds)


@job
def step(value: int = 0) -> int:
    """A chain step or chord header job: returns its input plus one."""
    return value + 1


@job
def count(values: list) -> int:
    """A chord callback: how many header results it was given."""
    return len(values)


@job
def insert_and_update(n: int) -> None:
    """A real job: one ORM insert and one ORM update (``bench/workload.py``; Celery runs the same body)."""
    from bench.workload import insert_and_update as body

    body(n)


# The soak's mix (bench/soak.py).


@job
def soak_fast() -> None:
    """The bulk of the soak: a no-op."""


@job
def soak_slow(seconds: float = 0.2) -> None:
    """Holds a thread for a while."""
    import time

    time.sleep(seconds)


@job
def soak_fail() -> None:
    """Fails for good (one attempt): an error entry and a failed row that the pruner's failed TTL removes."""
    raise RuntimeError("soak: this job always fails")


@job(bind=True, max_attempts=3, retry_delay=1)
def soak_retry(ctx) -> int:
    """Fails its first attempt, then succeeds: a retry (back to the queue 1 s later) every time."""
    if ctx.attempt < 2:
        raise RuntimeError("soak: first attempt fails")
    return ctx.attempt


@job
def soak_tick() -> None:
    """The soak's periodic job (runbeat fires it every few seconds)."""


@job
def stamp() -> float:
    """Returns the wall-clock time its function started: what the start-up benchmark reads."""
    import time

    return time.time()
