"""The progress bar, on stderr so the report on stdout stays clean to pipe or redirect."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evals.runner import CaseResult

OnDone = Callable[[CaseResult], None]


@contextmanager
def progress_bar(total: int, *, enabled: bool = True) -> Iterator[OnDone]:
    """Yields what to call as each case finishes; a no-op when disabled."""
    if not enabled:
        yield lambda result: None
        return
    columns = (
        TextColumn("{task.description:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("cases", total=total)

        def done(result: CaseResult) -> None:
            label = f"{result.case.key} ({result.side})"
            progress.update(task, advance=1, description=label[:40])

        yield done
