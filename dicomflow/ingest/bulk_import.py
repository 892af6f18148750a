"""`dicomflow import PATH...`: migrate an existing archive through the same write-and-publish
path as C-STORE, with a progress bar and a summary."""

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from dicomflow.core.settings import Settings
from dicomflow.core.storage import LocalStorage
from dicomflow.ingest.publisher import EventPublisher
from dicomflow.ingest.store import AlreadyStored, InstanceStore, Origin, Rejected

DICOM_PREFIX_OFFSET = 128
NOT_PART10 = "not a DICOM Part-10 file"


@dataclass
class ImportSummary:
    stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.stored + self.duplicates + sum(self.rejected.values())

    def lines(self) -> list[str]:
        lines = [
            f"stored:     {self.stored}",
            f"duplicates: {self.duplicates} (already stored with the same bytes)",
            f"rejected:   {sum(self.rejected.values())}",
        ]
        lines += [f"  {count:6d}  {reason}" for reason, count in self.rejected.most_common()]
        return lines


def walk(paths: Iterable[Path]) -> Iterator[Path]:
    """Every regular file under `paths` (files or folders), DICOMDIR files left out."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name.upper() != "DICOMDIR":
                        yield Path(root) / name
        elif path.is_file():
            yield path


def import_one(store: InstanceStore, origin: Origin, path: Path) -> str:
    """Store one file; return "stored", "duplicate" or the reason it was rejected."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    if data[DICOM_PREFIX_OFFSET : DICOM_PREFIX_OFFSET + 4] != b"DICM":
        return NOT_PART10
    try:
        store.store(data, origin, skip_identical=True)
    except AlreadyStored:
        return "duplicate"
    except Rejected as exc:
        return f"{exc.reason} (0x{exc.status:04X})"
    return "stored"


def run_import(settings: Settings, paths: list[Path], tenant: str, workers: int) -> ImportSummary:
    """Import every file under `paths` into `tenant` with `workers` threads."""
    publisher = EventPublisher(settings, settings.state_dir.resolve() / "outbox-import.db")
    publisher.start()
    store = InstanceStore(settings, LocalStorage(settings.storage_dir), publisher)
    origin = Origin(tenant=tenant, via="import")
    summary = ImportSummary()
    try:
        with (
            ThreadPoolExecutor(workers) as pool,
            tqdm(unit=" files", desc="importing", smoothing=0.1) as progress,
        ):
            outcomes = pool.map(lambda p: import_one(store, origin, p), walk(paths))
            for outcome in outcomes:
                if outcome == "stored":
                    summary.stored += 1
                elif outcome == "duplicate":
                    summary.duplicates += 1
                else:
                    summary.rejected[outcome] += 1
                progress.update()
    finally:
        publisher.stop()
    return summary
