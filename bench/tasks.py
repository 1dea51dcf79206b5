"""Jobs the benchmarks run."""

from djtasks import job


@job
def noop() -> None:
    """Does nothing: what is measured is the queue, not the job."""


@job
def step(value: int = 0) -> int:
    """A chain step or chord header job: returns its input plus one."""
    return value + 1


@job
def count(values: list) -> int:
    """A chord callback: how many header results it was given."""
    return len(values)
