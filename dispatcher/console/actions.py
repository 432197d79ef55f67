"""The console's actions, each through the CLI's own library code (`dispatcher.dlq`), run in the background.

A dry run, a replay or a purge reads the whole queue: it runs as a task the page follows, under the
console's queue lock (so the console never races itself) and the queue's own lock (so the CLI or
another console beside it makes a replay or purge refuse, changing nothing, as `dlq` commands do).
A purge always writes its export first: `dlq.purge` appends each chunk to the file and syncs it
before deleting any of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from dispatcher.dlq import FAILED, KEPT, WOULD_MOVE, BrokerProblem, Browse, ReplayReport, purge, replay
from dispatcher.logs import mask_urls

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from pathlib import Path

    from dispatcher.console.index import DeadLetterIndex
    from dispatcher.dead_letters import LetterFilter
    from dispatcher.envelope import Decoder
    from dispatcher.stamps import Stamper

log = structlog.get_logger("dispatcher.console")
KEPT_TASKS = 20
DRY_RUN, REPLAY, PURGE = "dry run", "replay", "purge"


@dataclass
class Task:
    """One action and how far it got; the page shows it until it is done."""

    id: str
    kind: str
    operator: str
    filter_text: str
    started_at: datetime
    rate_per_s: float | None = None
    read: int = 0
    total: int = 0
    report: ReplayReport = field(default_factory=ReplayReport)
    purged: Browse | None = None
    export_name: str | None = None
    error: str | None = None
    done: bool = False

    def progress(self, read: int, total: int) -> None:
        """The library's progress callback."""
        self.read, self.total = read, total

    @property
    def summary(self) -> str:
        """One sentence, as the CLI's summary line."""
        if self.purged is not None:
            what = f"deleted {len(self.purged.letters)} of {self.purged.examined} dead letters"
            return what + (f", exported first to {self.export_name}" if self.export_name else "")
        report = self.report
        if self.kind == DRY_RUN:
            return (
                f"would move {report.count(WOULD_MOVE)}, would keep {report.count(KEPT)} (dry run); "
                f"{report.examined} dead letters read"
            )
        return (
            f"moved {report.moved}, kept {report.count(KEPT)}, failed {report.count(FAILED)}; "
            f"{report.examined} dead letters read"
        )


@dataclass
class ActionSettings:
    """What the actions need of the deployment."""

    amqp_url: str
    dead_queue: str
    jobs_exchange: str
    publish_timeout_s: float
    export_dir: Path


class Actions:
    """Starts actions and keeps the last few for their pages."""

    def __init__(
        self,
        config: ActionSettings,
        *,
        decoder: Decoder,
        stamper: Stamper,
        queue_lock: asyncio.Lock,
        index: DeadLetterIndex,
    ) -> None:
        self._config = config
        self._decoder = decoder
        self._stamper = stamper
        self._queue_lock = queue_lock
        self._index = index
        self._tasks: dict[str, Task] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._numbers = itertools.count(1)

    def get(self, task_id: str) -> Task | None:
        """A recent task by its id."""
        return self._tasks.get(task_id)

    def replay(
        self, letter_filter: LetterFilter, filter_text: str, *, operator: str, dry_run: bool, rate_per_s: float | None
    ) -> Task:
        """Start a replay (or its dry run) of the letters the filter matches."""
        task = self._new(DRY_RUN if dry_run else REPLAY, operator, filter_text)
        task.rate_per_s = rate_per_s
        config = self._config
        self._run(
            task,
            replay(
                config.amqp_url,
                dead_queue=config.dead_queue,
                jobs_exchange=config.jobs_exchange,
                letter_filter=letter_filter,
                decoder=self._decoder,
                stamper=self._stamper,
                publish_timeout_s=config.publish_timeout_s,
                dry_run=dry_run,
                rate_per_s=rate_per_s,
                progress=task.progress,
                report=task.report,
            ),
        )
        return task

    def purge(self, letter_filter: LetterFilter, filter_text: str, *, operator: str) -> Task:
        """Start a purge of the letters the filter matches, each exported (synced) before it is deleted."""
        task = self._new(PURGE, operator, filter_text)
        task.export_name = f"purge-{task.started_at:%Y%m%dT%H%M%SZ}-{task.id}.jsonl"
        export = self._config.export_dir / task.export_name

        async def run() -> None:
            task.purged = await purge(
                self._config.amqp_url,
                self._config.dead_queue,
                letter_filter,
                stamper=self._stamper,
                backup=export,
                progress=task.progress,
            )
            if not export.exists():
                task.export_name = None  # nothing matched: nothing written, nothing deleted

        self._run(task, run())
        return task

    def export_path(self, name: str) -> Path | None:
        """The file of a purge's export, if this console wrote it."""
        for task in self._tasks.values():
            if task.export_name == name and (path := self._config.export_dir / name).is_file():
                return path
        return None

    def _new(self, kind: str, operator: str, filter_text: str) -> Task:
        task = Task(f"{next(self._numbers)}{secrets.token_hex(4)}", kind, operator, filter_text, datetime.now(UTC))
        self._tasks[task.id] = task
        for old in list(self._tasks)[:-KEPT_TASKS]:
            if self._tasks[old].done:
                del self._tasks[old]
        return task

    def _run(self, task: Task, work: Coroutine[object, object, object]) -> None:
        async def guarded() -> None:
            log.info("console_action_started", action=task.kind, operator=task.operator, filter=task.filter_text)
            try:
                async with self._queue_lock:
                    await work
            except BrokerProblem as exc:
                task.error = mask_urls(str(exc))
            except Exception as exc:  # noqa: BLE001 - the page says what failed; the console goes on
                task.error = mask_urls(f"{type(exc).__name__}: {exc}")
            finally:
                task.done = True
                if task.kind != DRY_RUN:
                    self._index.invalidate()
            log.info(
                "console_action_finished",
                action=task.kind,
                operator=task.operator,
                filter=task.filter_text,
                summary=task.summary,
                error=task.error,
            )

        running = asyncio.create_task(guarded())
        self._running.add(running)
        running.add_done_callback(self._running.discard)

    async def close(self) -> None:
        """Cancel running actions: the broker gives back what they held (dlq's guarantees)."""
        for running in list(self._running):
            running.cancel()
        for running in list(self._running):
            with contextlib.suppress(asyncio.CancelledError):
                await running
