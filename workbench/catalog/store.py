"""Reading the catalog from a space: ``catalog/datasets/<id>.json`` and ``catalog/views/<id>.json``,
each the JSON of a ``workbench.catalog.models`` record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from workbench.catalog.models import Dataset, View
from workbench.errors import WorkbenchUserError
from workbench.paths import Space


def _load_dir(folder: Path, model):
    records = {}
    for path in sorted(folder.glob("*.json")):
        try:
            record = model.model_validate_json(path.read_text())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise WorkbenchUserError(
                f"{path}: field '{where}': {first['msg']}. Fix the catalog entry or rebuild the "
                "space with 'workbench init --force'.",
                reason="bad-catalog-entry",
            ) from None
        records[record.id] = record
    return records


@dataclass(frozen=True)
class Catalog:
    datasets: dict[str, Dataset] = field(default_factory=dict)
    views: dict[str, View] = field(default_factory=dict)

    @classmethod
    def load(cls, space: Space) -> Catalog:
        return cls(
            datasets=_load_dir(space.catalog / "datasets", Dataset),
            views=_load_dir(space.catalog / "views", View),
        )

    @staticmethod
    def write(space: Space, record: Dataset | View) -> Path:
        kind = "datasets" if isinstance(record, Dataset) else "views"
        folder = space.catalog / kind
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{record.id}.json"
        path.write_text(record.model_dump_json(indent=2))
        return path

    def holders_of(self, table: str) -> list[Dataset]:
        """Every holder's dataset for a logical table, in holder order."""
        held = (d for d in self.datasets.values() if d.table == table)
        return sorted(held, key=lambda d: d.holder)

    def dataset_path(self, space: Space, dataset: Dataset) -> Path:
        return space.holder_dir(dataset.holder) / dataset.file
