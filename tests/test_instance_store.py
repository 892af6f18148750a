"""The write-and-publish path without services: what a failed event or write leaves on disk,
and what the worker makes of an event whose file is not its copy."""

import contextlib
import errno
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from dicomflow.core.settings import Settings
from dicomflow.core.storage import LocalStorage
from dicomflow.ingest.publisher import EventPublisher, PublishFailed
from dicomflow.ingest.store import OUT_OF_RESOURCES, InstanceStore, Origin, Rejected
from dicomflow.streams import resources
from dicomflow.streams.stored_copy import NotTheEventsCopy, read_and_keep_metadata
from dicomflow.tables.records import StorageEvent
from tests.dicom_factory import make_ct

ORIGIN = Origin("default", via="dimse")


class SwitchablePublisher:
    """Accepts events until `failing` is set, then fails as a full outbox would."""

    def __init__(self) -> None:
        self.failing = False
        self.published = 0
        self.sent: list[StorageEvent] = []

    def publish(self, topic: str, key: bytes, value: bytes) -> "SwitchablePublisher":
        self.sent.append(StorageEvent.loads(value))
        return self

    def wait(self) -> None:
        if self.failing:
            raise PublishFailed("outbox write failed: disk full")
        self.published += 1


@pytest.fixture
def publisher() -> SwitchablePublisher:
    return SwitchablePublisher()


class SwitchableStorage(LocalStorage):
    """Writes files until `failing` is set, then fails as a full disk would (at the end of the
    write, after the event went out); `seen_writing` is set once a reader found a write going on."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.failing = False
        self.seen_writing = threading.Event()

    @contextlib.contextmanager
    def writing(
        self, key: str, durable: bool = True, write_id: str | None = None
    ) -> Iterator[BinaryIO]:
        with super().writing(key, durable, write_id) as fh:
            yield fh
            if self.failing:
                raise OSError(errno.ENOSPC, "No space left on device")

    def being_written(self, key: str, write_id: str) -> bool:
        writing = super().being_written(key, write_id)
        if writing:
            self.seen_writing.set()
        return writing


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state", storage_root=tmp_path / "dicom")


@pytest.fixture
def storage(settings: Settings) -> SwitchableStorage:
    return SwitchableStorage(settings.storage_dir)


@pytest.fixture
def store(
    settings: Settings, storage: SwitchableStorage, publisher: SwitchablePublisher
) -> InstanceStore:
    resources.bind(settings).storage = storage  # the worker reads the files the store writes
    return InstanceStore(settings, storage, cast(EventPublisher, publisher))


def instance(tmp_path: Path, patient_name: str) -> bytes:
    path = tmp_path / f"{patient_name}.dcm"
    make_ct(
        path,
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        sop_uid="1.2.3.4.5",
        patient_name=patient_name,
    )
    return path.read_bytes()


def stored_files(tmp_path: Path) -> dict[str, bytes]:
    root = tmp_path / "dicom"
    return {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_new_instance_whose_event_fails_leaves_nothing(
    tmp_path: Path, store: InstanceStore, publisher: SwitchablePublisher
) -> None:
    publisher.failing = True
    with pytest.raises(Rejected) as rejected:
        store.store(instance(tmp_path, "First"), ORIGIN)
    assert rejected.value.status == OUT_OF_RESOURCES
    assert stored_files(tmp_path) == {}


@pytest.mark.parametrize("failing", ["event", "write"])
def test_a_resent_instance_that_fails_keeps_the_stored_copy(
    tmp_path: Path,
    store: InstanceStore,
    storage: SwitchableStorage,
    publisher: SwitchablePublisher,
    failing: str,
) -> None:
    first = instance(tmp_path, "First")
    store.store(first, ORIGIN)
    switched = publisher if failing == "event" else storage
    switched.failing = True
    with pytest.raises(Rejected) as rejected:
        store.store(instance(tmp_path, "Second, a longer name"), ORIGIN)
    assert rejected.value.status == OUT_OF_RESOURCES
    assert stored_files(tmp_path) == {"1.2.3.4.5.dcm": first}, "the acknowledged copy stays"
    stored, failed = publisher.sent  # each event goes out while its file is written
    read_and_keep_metadata(stored)
    with pytest.raises(NotTheEventsCopy):
        read_and_keep_metadata(failed)

    switched.failing = False
    second = instance(tmp_path, "Second, a longer name")
    store.store(second, ORIGIN)
    assert stored_files(tmp_path) == {"1.2.3.4.5.dcm": second}, "replaced, nothing beside it"
    assert publisher.published == 2


def test_a_new_instance_whose_write_fails_leaves_an_event_the_worker_skips(
    tmp_path: Path, store: InstanceStore, storage: SwitchableStorage, publisher: SwitchablePublisher
) -> None:
    storage.failing = True
    with pytest.raises(Rejected):
        store.store(instance(tmp_path, "First"), ORIGIN)
    assert stored_files(tmp_path) == {}
    (failed,) = publisher.sent
    with pytest.raises(FileNotFoundError):
        read_and_keep_metadata(failed)


def test_the_event_of_a_replaced_copy_is_not_read_for_the_later_copy(
    tmp_path: Path, store: InstanceStore
) -> None:
    earlier = store.store(instance(tmp_path, "First"), ORIGIN)
    later = store.store(instance(tmp_path, "Second, a longer name"), ORIGIN)
    with pytest.raises(NotTheEventsCopy):
        read_and_keep_metadata(earlier)
    header, record, _ = read_and_keep_metadata(later)
    assert str(header.PatientName) == "Second, a longer name"
    assert record.sop_uid == later.sop_uid


def test_the_worker_reads_an_events_file_once_the_scp_has_written_it(
    tmp_path: Path, store: InstanceStore, storage: SwitchableStorage, publisher: SwitchablePublisher
) -> None:
    first, other = instance(tmp_path, "First"), instance(tmp_path, "Other")
    assert len(first) == len(other), "a copy of the same size: only the wait tells them apart"
    store.store(first, ORIGIN)
    storage.seen_writing.clear()
    with ThreadPoolExecutor(1) as worker:
        reading: list[Future] = []

        def read_as_soon_as_sent(topic: str, key: bytes, value: bytes) -> SwitchablePublisher:
            SwitchablePublisher.publish(publisher, topic, key, value)
            reading.append(worker.submit(read_and_keep_metadata, publisher.sent[-1]))
            assert storage.seen_writing.wait(10), "the worker saw the write in progress"
            return publisher

        publisher.publish = read_as_soon_as_sent  # type: ignore[method-assign]
        store.store(other, ORIGIN)
        header, _, _ = reading[0].result(timeout=10)
    assert str(header.PatientName) == "Other"
