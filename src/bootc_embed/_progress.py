"""Progress reporting: bars per layer on a terminal, nothing in a pipe."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Protocol


class Progress:
    """Progress of one layer; the default does nothing."""

    def start(self, phase: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


class Reporter(Protocol):
    def task(self, label: str) -> contextlib.AbstractContextManager[Progress]: ...

    def warn(self, message: str) -> None: ...


class NullReporter:
    @contextlib.contextmanager
    def task(self, label: str) -> Iterator[Progress]:
        yield Progress()

    def warn(self, message: str) -> None:
        print(f"bootc-embed: warning: {message}", file=sys.stderr)


class _RichTask(Progress):
    def __init__(self, bars: object, label: str) -> None:
        self._bars = bars
        self._label = label
        self._id = bars.add_task(label, total=None)  # type: ignore[attr-defined]

    def start(self, phase: str, total: int) -> None:
        self._bars.update(  # type: ignore[attr-defined]
            self._id, description=f"{self._label} [dim]{phase}", total=total, completed=0
        )

    def advance(self, n: int) -> None:
        self._bars.advance(self._id, n)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self._bars.remove_task(self._id)  # type: ignore[attr-defined]


class RichReporter:
    """Live progress bars on stderr (only used when stderr is a terminal)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import (
            Progress as Bars,
        )

        self.console = Console(stderr=True)
        self._bars = Bars(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._lock = threading.Lock()

    def __enter__(self) -> RichReporter:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}")

    @contextlib.contextmanager
    def task(self, label: str) -> Iterator[Progress]:
        t = _RichTask(self._bars, label)
        try:
            yield t
        finally:
            t.finish()
            self.console.print(f"[green]✓[/] {label}")
