"""The fork server's safety checks and the subreaper's reaping, in processes of their own."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest

from djtasks.worker.forkserver import ForkServer, ForkServerUnavailable, reap_adopted


def test_no_fork_server_while_another_thread_runs():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="someone-elses-thread")
    thread.start()
    try:
        with pytest.raises(ForkServerUnavailable, match="someone-elses-thread"):
            ForkServer.start(lambda *args: None)
    finally:
        stop.set()
        thread.join()


def _exit_with(body) -> None:
    os._exit(body())


def _in_child(body) -> int:
    """Run ``body()`` in a fresh single-threaded process (so reaping there cannot touch this process's children,
    and its forks do not copy this process's threads); its exit code."""
    process = multiprocessing.get_context("spawn").Process(target=_exit_with, args=(body,))
    process.start()
    process.join(30)
    return process.exitcode


def _reap_strangers() -> int:
    known = os.fork()
    if known == 0:
        time.sleep(5)
        os._exit(0)
    stranger = os.fork()
    if stranger == 0:
        os._exit(3)
    time.sleep(0.3)
    reaped = reap_adopted({known})
    still_waitable = os.waitpid(known, os.WNOHANG) == (0, 0)
    os.kill(known, 9)
    os.waitpid(known, 0)
    return 0 if reaped == [(stranger, 3)] and still_waitable else 1


def _leave_known() -> int:
    known = os.fork()
    if known == 0:
        os._exit(7)
    time.sleep(0.3)
    reaped = reap_adopted({known})
    _, status = os.waitpid(known, 0)  # still there for its owner to wait for
    return 0 if reaped == [] and os.waitstatus_to_exitcode(status) == 7 else 1


def test_reap_adopted_reaps_exited_strangers_and_leaves_known_children_alone():
    assert _in_child(_reap_strangers) == 0


def test_reap_adopted_never_reaps_a_known_child_that_exited():
    assert _in_child(_leave_known) == 0
