"""Series-level state records on `dicom_state_queue`."""

from pydicom.dataset import Dataset

from dicomflow.streams.progress import SeriesProgress
from dicomflow.streams.topics import state_topic
from dicomflow.tables.extract import state_record


async def send_state(key: str, header: Dataset, progress: SeriesProgress) -> None:
    await state_topic.send(
        key=key,
        value=state_record(
            header,
            progress.last_event,
            series_related_instances=progress.instances,
            series_state=progress.state,
            first_received_time=progress.first_received_time,
            last_received_time=progress.last_received_time,
        ),
    )
