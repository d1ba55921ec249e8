"""A few slots per machine for slow work done inside web requests (scoring with a reward model).

Each slot is a file in `settings.SLOTS_DIR` held with an exclusive, non-blocking `flock`: every web
process and thread of one machine (gunicorn workers, runserver threads) sees the same slots, and a
process that dies releases its slot with its file descriptor, so nothing is ever left taken. When all
slots are busy the caller is told at once instead of waiting, so slow work can hold at most
`count` web workers and the others keep serving pages.
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings


class NoFreeSlot(Exception):
    """Every slot of this kind is taken on this machine."""


@contextmanager
def slot(kind: str, count: int) -> Iterator[int]:
    """Hold one of `count` slots named `kind` for the duration of the block; NoFreeSlot if none is free."""
    folder = Path(settings.SLOTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        fd = os.open(folder / f"{kind}-{number}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield number
        finally:
            os.close(fd)  # closing the descriptor releases the lock
        return
    raise NoFreeSlot(kind)
