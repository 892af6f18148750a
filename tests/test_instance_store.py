"""The write-and-publish path without services: what a failed event leaves on disk."""

from pathlib import Path
from typing import cast

import pytest

from dicomflow.core.settings import Settings
from dicomflow.core.storage import LocalStorage
from dicomflow.ingest.publisher import EventPublisher, PublishFailed
from dicomflow.ingest.store import OUT_OF_RESOURCES, InstanceStore, Origin, Rejected
from tests.dicom_factory import make_ct

ORIGIN = Origin("default", via="dimse")


class SwitchablePublisher:
    """Accepts events until `failing` is set, then fails as a full outbox would."""

    def __init__(self) -> None:
        self.failing = False
        self.published = 0

    def publish(self, topic: str, key: bytes, value: bytes) -> None:
        if self.failing:
            raise PublishFailed("outbox write failed: disk full")
        self.published += 1


@pytest.fixture
def publisher() -> SwitchablePublisher:
    return SwitchablePublisher()


@pytest.fixture
def store(tmp_path: Path, publisher: SwitchablePublisher) -> InstanceStore:
    settings = Settings(state_dir=tmp_path / "state", storage_root=tmp_path / "dicom")
    storage = LocalStorage(settings.storage_dir)
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


def test_a_resent_instance_whose_event_fails_keeps_the_stored_copy(
    tmp_path: Path, store: InstanceStore, publisher: SwitchablePublisher
) -> None:
    first = instance(tmp_path, "First")
    store.store(first, ORIGIN)
    publisher.failing = True
    with pytest.raises(Rejected) as rejected:
        store.store(instance(tmp_path, "Second"), ORIGIN)
    assert rejected.value.status == OUT_OF_RESOURCES
    assert stored_files(tmp_path) == {"1.2.3.4.5.dcm": first}, "the acknowledged copy stays"

    publisher.failing = False
    second = instance(tmp_path, "Second")
    store.store(second, ORIGIN)
    assert stored_files(tmp_path) == {"1.2.3.4.5.dcm": second}, "replaced, nothing beside it"
    assert publisher.published == 2
