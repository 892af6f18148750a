"""The four analytics tables: which topic fills each, with which record, keyed how."""

from dataclasses import dataclass
from typing import Any

import faust

from dicomflow.core import topics
from dicomflow.tables.records import AccessLogRecord, ImageRecord, StateRecord, StorageEvent


@dataclass(frozen=True)
class SinkTable:
    """A table filled from one topic; its columns are the fields of the topic's record.

    `key` and `latest_by` describe tables with one row per key where the row with the
    greatest `latest_by` wins (Doris UNIQUE KEY with a sequence column); tables without
    a key get one row per message (Doris DUPLICATE KEY).
    """

    name: str
    topic: str
    record: type[faust.Record]
    key: tuple[str, ...] = ()
    latest_by: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.record._options.fields)

    def values(self, record: faust.Record) -> tuple[Any, ...]:
        return tuple(getattr(record, column) for column in self.columns)


SINK_TABLES = (
    SinkTable("dicom_object_meta", topics.LOG_QUEUE, StorageEvent),
    SinkTable(
        "dicom_state_meta",
        topics.DICOM_STATE_QUEUE,
        StateRecord,
        key=("tenant_id", "study_uid", "series_uid"),
        latest_by="updated_time",
    ),
    SinkTable(
        "dicom_image_meta",
        topics.DICOM_IMAGE_QUEUE,
        ImageRecord,
        key=("tenant_id", "study_uid", "series_uid", "sop_uid"),
        latest_by="indexed_time",
    ),
    SinkTable("wado_access_log", topics.ACCESS_LOG_QUEUE, AccessLogRecord),
)
