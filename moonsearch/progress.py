"""One progress-bar style for every long job (indexing, feature caching, training)."""

from __future__ import annotations

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.console import Console
from rich.text import Text

# Progress and summaries go to stderr so that `--json` output on stdout stays machine-readable.
console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Items per second since the start ("31.2 products/s"): the number a user compares between
    runs, thread settings and machines. The whole-run average, not rich's recent window, which
    jumps when work is counted in bursts (a chunk of batches at a time)."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        shown = f"{task.completed / elapsed:,.1f}" if elapsed and task.completed else "-"
        return Text(f"{shown} {self.unit}/s", style="progress.data.speed")


def progress_bar(unit: str | None = None) -> Progress:
    """`unit` (e.g. "products") adds a rate column."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns.append(RateColumn(unit))
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=console)
