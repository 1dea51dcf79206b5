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
def stamp() -> float:
    """Returns the wall-clock time its function started: what the start-up benchmark reads."""
    import time

    return time.time()
