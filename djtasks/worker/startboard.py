"""The start board: which jobs a worker process has started, readable by its supervisor after a sudden death.

A process that dies (SIGKILL, the OOM killer, a segfault) says nothing more, and its last start marks may not
have reached the database yet (the completer writes them in batches). So each job thread also writes the
job it starts into a slot of this small shared-memory table before calling the job's function, and clears it
once the job's outcome is recorded. It costs a 20-byte memory write per job (no system call, no message),
and the memory outlives the process: the supervisor reads the table after reaping it and charges an attempt
to exactly the jobs listed (or marked ``started_at`` in the database); every other job the process held was
only claimed ahead and goes back to the queue uncharged.

A slot is ``(job id: 16 bytes, attempt: uint32)``; attempt 0 means empty (attempts count from 1). A kill in
the middle of a write leaves attempt 0 (it is written after the id, into a slot cleared before reuse), so a
torn slot reads as empty: that job's function had not been called yet.
"""

from __future__ import annotations

import struct
from typing import Any
from uuid import UUID

SLOT = struct.Struct("<16sI")


class StartBoard:
    """``capacity`` slots over ``buffer`` (a ``multiprocessing`` ``RawArray`` of bytes shared with the
    supervisor, or a private ``bytearray``)."""

    def __init__(self, capacity: int, buffer: Any = None) -> None:
        self.capacity = capacity
        self.buffer = buffer if buffer is not None else bytearray(capacity * SLOT.size)
        self._view = memoryview(self.buffer).cast("B")
        if len(self._view) < capacity * SLOT.size:
            raise ValueError(f"a start board of {capacity} slots needs {capacity * SLOT.size} bytes")

    @classmethod
    def shared(cls, ctx: Any, capacity: int) -> StartBoard:
        """A board in shared memory; pass ``board.buffer`` and ``capacity`` to the child process."""
        return cls(capacity, ctx.RawArray("B", capacity * SLOT.size))

    def mark(self, slot: int, job_id: UUID, attempt: int) -> None:
        SLOT.pack_into(self._view, slot * SLOT.size, job_id.bytes, attempt)

    def clear(self, slot: int) -> None:
        SLOT.pack_into(self._view, slot * SLOT.size, b"", 0)

    def started(self) -> list[tuple[UUID, int]]:
        """``(job id, attempt)`` of every job listed as started."""
        raw = bytes(self._view[: self.capacity * SLOT.size])
        return [(UUID(bytes=job_id), attempt) for job_id, attempt in SLOT.iter_unpack(raw) if attempt]
