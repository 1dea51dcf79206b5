"""Worker processes forked from a fork server: ready in milliseconds, where a spawned one imports Django afresh.

``runworker``'s supervisor, once Django is set up and the system checks have passed, and before it opens a
database connection or starts a thread, forks one process that does nothing but wait for requests and fork:
the fork server. Every worker process, the first ones and every replacement (a recycled or a dead process),
is forked from it with Django, the settings and the job modules already loaded.

Why that is safe: at the moment the fork server is made, the supervisor has one thread and no open
connection (it closes Django's first and refuses to go on if another thread runs), so the fork server holds
no lock another thread could have held, no socket another process uses, and starts no thread of its own. A
worker opens its own connections and threads after its fork, exactly as a spawned one does. What a worker
needs from the supervisor (its report pipe and its start board, a ``memfd`` both map) reaches the fork
server over a unix socket (``SCM_RIGHTS``), and the fork server closes its copies once the worker has them.

Each worker is forked twice (fork server, then a middle process that exits at once), and the supervisor has
made itself a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``): the orphaned worker is adopted by the
supervisor, which is then its parent as with ``spawn``: it waits for it, reads its exit status, and the
worker notices the supervisor's death by its parent changing. The supervisor also reaps any other orphan
adopted that way (a subprocess a job left behind).

Where this cannot hold (not Linux, no ``pidfd_open``/``memfd_create``, a thread already running in the
supervisor, the prctl refused) or once the fork server is gone, workers are started with ``spawn`` as before,
and the supervisor says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import logging
import mmap
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any
from uuid import UUID

from .startboard import SLOT, StartBoard

logger = logging.getLogger("djtasks.supervisor")

PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
_HEADER = struct.Struct("<I")
REPLY_TIMEOUT_S = 10.0  # a fork server that does not answer a request this long is treated as gone
ADOPTION_TIMEOUT_S = 5.0  # how long a new worker waits to be adopted by the supervisor


class ForkServerUnavailable(RuntimeError):
    """Workers cannot be forked here (the reason is the message); they are spawned instead."""


def _prctl(option: int, value: Any) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _name_this_process(name: str) -> None:
    """Set the kernel's name of this process (``/proc/PID/comm``, ``ps -o comm``), so it can be told apart."""
    with contextlib.suppress(OSError, AttributeError):
        _prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]))


def _send(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    body = json.dumps(message).encode()
    socket.send_fds(sock, [_HEADER.pack(len(body)) + body], list(fds))


def _receive(sock: socket.socket, maxfds: int = 0) -> tuple[dict[str, Any], list[int]] | None:
    """One message (and the descriptors sent with it); None when the other end closed."""
    data, fds, _flags, _addr = socket.recv_fds(sock, 65536, maxfds)
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    (size,) = _HEADER.unpack_from(data)
    body = data[_HEADER.size :]
    while len(body) < size:  # a message this small arrives whole; this only guards against a short read
        more = sock.recv(size - len(body))
        if not more:
            return None
        body += more
    return json.loads(body), fds


class ForkedProcess:
    """A worker forked by the fork server and adopted by the supervisor: the part of ``multiprocessing.Process``
    the supervisor uses (``pid``, ``sentinel``, ``exitcode``, ``kill()``, ``join()``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._exitcode: int | None = None
        self._pidfd: int | None = os.pidfd_open(pid)  # readable once the process has exited

    @property
    def sentinel(self) -> int:
        assert self._pidfd is not None
        return self._pidfd

    @property
    def exitcode(self) -> int | None:
        if self._exitcode is None:
            self._poll(os.WNOHANG)
        return self._exitcode

    def _poll(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:
            return  # not adopted yet (its middle process is still exiting): still ours to wait for
        if pid == self.pid:
            self._exitcode = os.waitstatus_to_exitcode(status)
            self._close()

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.exitcode is None and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.005)

    def kill(self) -> None:
        if self.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def _close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


class ForkServer:
    """The supervisor's handle on the fork server; ``start()`` makes it (see the module docstring)."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self._sock = sock
        self.alive = True

    @classmethod
    def start(cls, run_worker: Callable[..., None]) -> ForkServer:
        """Fork the fork server from this (single-threaded, connection-free) process. ``run_worker(worker_id,
        conn, parent_pid, board)`` runs in each forked worker and must not return (it ends with ``os._exit``).
        Raises ``ForkServerUnavailable`` when workers cannot be forked safely here."""
        if not sys.platform.startswith("linux"):
            raise ForkServerUnavailable(f"worker processes are forked only on Linux (this is {sys.platform})")
        if not (hasattr(os, "pidfd_open") and hasattr(os, "memfd_create") and hasattr(socket, "send_fds")):
            raise ForkServerUnavailable("this Python lacks os.pidfd_open, os.memfd_create or socket.send_fds")
        others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        if others:
            raise ForkServerUnavailable(f"threads already run in the supervisor ({', '.join(others)})")
        try:
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
        except OSError as exc:
            raise ForkServerUnavailable(f"cannot become a child subreaper ({exc})") from exc
        from django.db import connections

        connections.close_all()  # nothing of the supervisor's may be shared across the fork
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # the fork server
            code = 1
            try:
                ours.close()
                _serve(theirs, supervisor, run_worker)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        ours.settimeout(REPLY_TIMEOUT_S)
        return cls(pid, ours)

    def fork_worker(self, worker_id: UUID, board_capacity: int) -> tuple[ForkedProcess, Connection, StartBoard]:
        """A new worker process, its report pipe (the supervisor's end) and its start board. Raises
        ``ForkServerUnavailable`` if the fork server is gone."""
        if not self.alive:
            raise ForkServerUnavailable("the fork server is gone")
        size = board_capacity * SLOT.size
        board_fd = os.memfd_create("djtasks-startboard", os.MFD_CLOEXEC)
        reader, writer = os.pipe()
        try:
            os.ftruncate(board_fd, size)
            board = StartBoard(board_capacity, mmap.mmap(board_fd, size))
            _send(self._sock, {"worker_id": str(worker_id), "capacity": board_capacity}, [writer, board_fd])
            reply = _receive(self._sock)
        except OSError as exc:  # includes the socket timeout
            os.close(reader)
            self._lost(exc)
            raise ForkServerUnavailable(f"the fork server is gone ({exc})") from exc
        finally:
            os.close(writer)
            os.close(board_fd)
        if reply is None or "pid" not in reply[0]:
            os.close(reader)
            self._lost(reply[0].get("error") if reply else "it closed its socket")
            raise ForkServerUnavailable("the fork server is gone")
        return ForkedProcess(reply[0]["pid"]), Connection(reader, writable=False), board

    def _lost(self, why: Any) -> None:
        if self.alive:
            logger.error("supervisor: the fork server is gone (%s); worker processes are spawned from now on", why)
        self.alive = False
        with contextlib.suppress(OSError):
            self._sock.close()

    def check(self) -> None:
        """Notice a fork server that exited (killed by someone): reap it; workers are spawned from then on."""
        if self.alive:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid == self.pid:
                    self._lost(f"it exited: status {os.waitstatus_to_exitcode(status)}")

    def stop(self) -> None:
        """Close the socket: the fork server exits (its workers are the supervisor's, not its own)."""
        self.alive = False
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def reap_adopted(known: set[int]) -> list[tuple[int, int]]:
    """Reap exited children that are not in ``known`` (orphans the subreaper adopted, e.g. a subprocess a job
    left behind), leaving the known ones to whoever waits for them; returns ``(pid, exit code)`` of each."""
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if info is None or info.si_pid in known:
            return reaped  # the next exited child is one of ours: its owner reaps it
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(info.si_pid, 0)
            reaped.append((info.si_pid, os.waitstatus_to_exitcode(status)))


# -- in the fork server ------------------------------------------------------------------------------------
def _serve(sock: socket.socket, supervisor: int, run_worker: Callable[..., None]) -> None:
    """Fork a worker for each request until the supervisor closes the socket (it stopped or died)."""
    _name_this_process("djtasks-forksrv")
    # Everything loaded so far (Django, the apps, the jobs) lives as long as any worker: move it out of the
    # collector's reach. A worker's collections then never walk it, which would cost CPU on each full
    # collection and write to every page of it, copying the pages this process shares with its children.
    gc.freeze()
    # A signal to the whole process group (Ctrl-C, systemd, timeout) is the supervisor's to act on; this
    # process exits when the supervisor closes the socket, or dies with it.
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    while True:
        try:
            received = _receive(sock, maxfds=2)
        except OSError:
            return
        if received is None:
            return
        request, fds = received
        try:
            middle = os.fork()
            if middle == 0:
                _middle(sock, supervisor, request, fds, run_worker)  # never returns
            os.waitpid(middle, 0)  # it exits as soon as the worker is forked: reaped here, never a zombie
        except OSError as exc:
            with contextlib.suppress(OSError):
                _send(sock, {"error": f"fork failed: {exc}"})
        finally:
            for fd in fds:
                os.close(fd)


def _middle(
    sock: socket.socket, supervisor: int, request: dict[str, Any], fds: list[int], run_worker: Callable[..., None]
) -> None:
    code = 1
    try:
        pid = os.fork()
        if pid == 0:
            sock.close()
            _worker(supervisor, request, fds, run_worker)
        _send(sock, {"pid": pid})
        code = 0
    finally:
        os._exit(code)  # the worker is orphaned now and adopted by the supervisor


def _worker(supervisor: int, request: dict[str, Any], fds: list[int], run_worker: Callable[..., None]) -> None:
    code = 1
    try:
        _name_this_process("djtasks-worker")
        for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        deadline = time.monotonic() + ADOPTION_TIMEOUT_S
        while os.getppid() != supervisor and time.monotonic() < deadline:
            time.sleep(0.0005)  # the middle process is exiting; a heartbeat checks the parent from here on
        writer, board_fd = fds
        capacity = request["capacity"]
        board = StartBoard(capacity, mmap.mmap(board_fd, capacity * SLOT.size))
        os.close(board_fd)
        run_worker(UUID(request["worker_id"]), Connection(writer, readable=False), supervisor, board)
        code = 0
    except BaseException:
        logger.exception("worker process could not start")
    finally:
        os._exit(code)
