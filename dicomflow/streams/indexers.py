"""PostgreSQL indexers: batches from the state and image topics, committed before the offsets."""

from dicomflow.streams.app import app
from dicomflow.streams.resources import resources
from dicomflow.streams.topics import image_topic, state_topic
from dicomflow.streams.upsert import Upserter, UpsertTable
from dicomflow.tables.records import ImageRecord, StateRecord

BATCH_SIZE = 500
BATCH_SECONDS = 0.2

state_rows = Upserter(
    UpsertTable("dicom_state_meta", ("tenant_id", "study_uid", "series_uid"), "updated_time"),
    StateRecord,
)
image_rows = Upserter(
    UpsertTable(
        "dicom_image_meta", ("tenant_id", "study_uid", "series_uid", "sop_uid"), "received_time"
    ),
    ImageRecord,
)


@app.agent(state_topic)
async def index_series_state(stream):  # type: ignore[no-untyped-def]
    async for batch in stream.take(BATCH_SIZE, within=BATCH_SECONDS):
        await state_rows.write(await resources().pool(), batch)


@app.agent(image_topic)
async def index_instances(stream):  # type: ignore[no-untyped-def]
    async for batch in stream.take(BATCH_SIZE, within=BATCH_SECONDS):
        await image_rows.write(await resources().pool(), batch)
