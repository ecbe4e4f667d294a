"""What is wrong with the input: one ``Problem`` per finding, the report that lists them all, and
the error raised when any of them is an error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]
_ROWS_SHOWN = 10  # row positions printed per problem; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where it is (file, column, rows) and why."""

    severity: Severity
    table: str  # contract table name ("" for a file or setting that is not a table)
    source: str  # what the user calls it: "invoices.csv", "db table invoices", "mapping.yaml"
    column: str | None  # contract column name
    rows: tuple[int, ...]  # CSV: file line numbers (header = line 1); otherwise 1-based rows
    message: str
    source_column: str | None = None  # the column's name in the source when a mapping renamed it

    def __str__(self) -> str:
        parts = [self.source]
        if self.column is not None:
            renamed = self.source_column not in (None, self.column)
            shown = f"{self.source_column} ({self.column})" if renamed else self.column
            parts.append(f"column {shown}")
        if self.rows:
            lines = self.source.endswith((".csv", ".yaml", ".yml"))  # files people read by line
            parts.append(_format_rows(self.rows, "line" if lines else "row"))
        return f"{', '.join(parts)}: {self.message}"


def _format_rows(rows: tuple[int, ...], word: str) -> str:
    """'lines 5, 9, 12 (+3 more)': the first few row positions, the rest counted."""
    shown = ", ".join(str(r) for r in rows[:_ROWS_SHOWN])
    more = f" (+{len(rows) - _ROWS_SHOWN} more)" if len(rows) > _ROWS_SHOWN else ""
    return f"{word}{'s' if len(rows) > 1 else ''} {shown}{more}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class ValidationReport:
    """Every problem found in the input, and how many rows each table had."""

    problems: list[Problem] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # rows left out by mapping filters

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        """One line per problem (errors first), then a summary with row counts."""
        lines = [f"{p.severity}: {p}" for p in self.errors + self.warnings]
        counts = ", ".join(
            f"{name} {_plural(n, 'row')}"
            + (f" ({self.dropped[name]:,} dropped by the mapping)" if name in self.dropped else "")
            for name, n in self.row_counts.items()
        )
        summary = f"{_plural(len(self.errors), 'error')}, {_plural(len(self.warnings), 'warning')}"
        lines.append(f"{summary}; tables read: {counts}" if counts else summary)
        return "\n".join(lines)


class DataContractError(ValueError):
    """The input breaks the data contract; ``report`` holds every problem found."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.format())
