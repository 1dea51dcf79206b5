"""Jobs the benchmarks run."""

from djtasks import job


@job
def noop() -> None:
    """Does nothing: what is measured is the queue, not the job."""
