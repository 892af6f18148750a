"""The topics the agents read and write, each with its record type."""

import faust

from dicomflow.core import topics
from dicomflow.streams.app import app
from dicomflow.tables.records import AccessLogRecord, ImageRecord, StateRecord, StorageEvent


class SeriesSignal(faust.Record, serializer="json"):
    """Internal: re-check a series for stability / announce that it became stable."""

    series_key: str
    expected_instances: int = 0
    attempt: int = 0


storage_topic = app.topic(topics.STORAGE_QUEUE, key_type=str, value_type=StorageEvent)
state_topic = app.topic(topics.DICOM_STATE_QUEUE, key_type=str, value_type=StateRecord)
image_topic = app.topic(topics.DICOM_IMAGE_QUEUE, key_type=str, value_type=ImageRecord)
log_topic = app.topic(topics.LOG_QUEUE, key_type=str, value_type=StorageEvent)
access_log_topic = app.topic(topics.ACCESS_LOG_QUEUE, key_type=str, value_type=AccessLogRecord)

series_check_topic = app.topic(
    "dicomflow-series-check", key_type=str, value_type=SeriesSignal, internal=True
)
series_stable_topic = app.topic(
    "dicomflow-series-stable", key_type=str, value_type=SeriesSignal, internal=True
)
