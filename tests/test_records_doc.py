"""docs/RECORDS.md documents every column the records and profile.csv hold (a new column
without a line there fails here), with a unit column for each table."""
import pathlib
import re

from fedjax_grid.grid.phases import PHASES
from fedjax_grid.grid.records import ROUND_COLUMNS, TASK_COLUMNS, WORKER_COLUMNS

DOC = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "RECORDS.md").read_text()


def _section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 3)
    return DOC[start:end if end > 0 else None]


def _documented(section: str) -> set:
    """Column names in the first cell of the section's table rows."""
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([a-z_0-9]+)`", line.split("|")[1]))
    return names


def test_every_column_is_documented_with_its_unit():
    for title, columns in (("tasks", TASK_COLUMNS), ("rounds", ROUND_COLUMNS),
                           ("workers", WORKER_COLUMNS),
                           ("profile.csv", ("round", *PHASES, "train_s", "tasks"))):
        section = _section(title)
        assert "| unit |" in section, title
        missing = set(columns) - _documented(section)
        assert not missing, f"{title}: {sorted(missing)} not in docs/RECORDS.md"


def test_accuracy_units_and_overlapped_rounds_are_explained():
    assert "**Accuracies are fractions**" in DOC and "**percent**" in DOC
    overlap = _section("rounds")
    assert "sum of `round_time_s` exceeds the run's wall time" in overlap
