"""Waits a draining worker cuts short: tokens, pauses and jitter, never a call already sent."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable

T = TypeVar("T")


class Waits:
    """Tracks the tasks that are only waiting, so a worker that drains can wake them all at once."""

    def __init__(self, draining: asyncio.Event) -> None:
        self._draining = draining
        self._waiting: set[asyncio.Task[object]] = set()

    @property
    def draining(self) -> bool:
        """True once the worker has begun to shut down."""
        return self._draining.is_set()

    async def unless_draining(self, waiting: Awaitable[T]) -> T | None:
        """Await `waiting` unless the worker drains first (see `interrupt`); None if it did."""
        if self._draining.is_set():
            if asyncio.iscoroutine(waiting):
                waiting.close()
            return None
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            return await waiting
        except asyncio.CancelledError:
            if not self._draining.is_set() or task.uncancel() > 0:
                raise
            return None
        finally:
            self._waiting.discard(task)

    def interrupt(self) -> None:
        """Wake every task that is only waiting: the worker drains."""
        for task in self._waiting:
            task.cancel()
