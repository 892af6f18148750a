"""Reading a series' files ahead after its metadata: which files, how often, and that the kernel
does read them."""

import os
from pathlib import Path

from dicomflow.api.readahead import SeriesFiles, SeriesReadahead, first_files_within
from dicomflow.core.storage import LocalStorage
from tests.page_cache import evict, resident
from tests.services import wait_for

SERIES = ("default", "1.2.3", "1.2.3.4")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingStorage(LocalStorage):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read_ahead_keys: list[str] = []

    def read_ahead(self, key: str) -> None:
        self.read_ahead_keys.append(key)
        super().read_ahead(key)


def listing(files: list[tuple[str, int]]) -> SeriesFiles:
    async def series_files(tenant: str, study_uid: str, series_uid: str) -> list[tuple[str, int]]:
        assert (tenant, study_uid, series_uid) == SERIES
        return files

    return series_files


def test_the_first_files_that_fit_the_budget_are_read_ahead() -> None:
    files = [("a", 40), ("b", 40), ("c", 40), ("d", 1)]

    assert list(first_files_within(files, 80)) == ["a", "b"]
    assert list(first_files_within(files, 79)) == ["a"]
    assert list(first_files_within(files, 1000)) == ["a", "b", "c", "d"]
    assert list(first_files_within(files, 0)) == []


def test_a_series_is_read_ahead_again_only_after_the_interval(tmp_path: Path) -> None:
    clock = Clock()
    readahead = SeriesReadahead(
        listing([]), LocalStorage(tmp_path), 2**20, 10, interval=30.0, clock=clock
    )
    other = ("default", "1.2.3", "1.2.3.5")

    assert readahead.due(*SERIES)
    assert not readahead.due(*SERIES)
    assert readahead.due(*other)
    clock.now += 29.9
    assert not readahead.due(*SERIES)
    clock.now += 0.2
    assert readahead.due(*SERIES)


def test_readahead_remembers_a_bounded_number_of_series(tmp_path: Path) -> None:
    clock = Clock()
    readahead = SeriesReadahead(
        listing([]), LocalStorage(tmp_path), 2**20, max_series=2, interval=30.0, clock=clock
    )
    first, second, third = (("default", "1.2", f"1.2.{n}") for n in range(3))

    assert readahead.due(*first) and readahead.due(*second) and readahead.due(*third)

    assert readahead.due(*first)  # forgotten when the third came: read ahead again
    assert not readahead.due(*third)


def test_readahead_off_never_is_due(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert not SeriesReadahead(listing([]), storage, 0, 10).due(*SERIES)
    assert not SeriesReadahead(listing([]), storage, 2**20, 0).due(*SERIES)


async def test_the_files_within_the_budget_are_read_into_the_page_cache(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    sizes = {"s/1.dcm": 300_000, "s/2.dcm": 300_000, "s/3.dcm": 300_000}
    for key, size in sizes.items():
        storage.write_atomic(key, [os.urandom(size)])
        evict(tmp_path / key)
    assert not any(resident(tmp_path / key) for key in sizes)
    readahead = SeriesReadahead(listing(list(sizes.items())), storage, 700_000, 10)

    await readahead.run(*SERIES)

    assert storage.read_ahead_keys == ["s/1.dcm", "s/2.dcm"]
    wait_for(
        lambda: resident(tmp_path / "s/1.dcm") and resident(tmp_path / "s/2.dcm"),
        10,
        0.01,
        "the first two files in the page cache",
    )
    assert not resident(tmp_path / "s/3.dcm")


async def test_a_file_removed_since_it_was_listed_is_skipped(tmp_path: Path) -> None:
    storage = RecordingStorage(tmp_path)
    storage.write_atomic("s/1.dcm", [b"x" * 1000])
    evict(tmp_path / "s/1.dcm")
    files = [("s/gone.dcm", 10), ("s/1.dcm", 1000)]

    await SeriesReadahead(listing(files), storage, 2**20, 10).run(*SERIES)

    assert storage.read_ahead_keys == ["s/gone.dcm", "s/1.dcm"]
    wait_for(lambda: resident(tmp_path / "s/1.dcm"), 10, 0.01, "the file in the page cache")
