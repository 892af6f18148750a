"""pynetdicom event handlers; dependencies are bound as arguments when the server starts."""

import logging
from io import BytesIO
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom import events as evt
from pynetdicom.dimse_primitives import C_STORE

from dicomflow.core.settings import Settings
from dicomflow.ingest.file_meta import part10_header
from dicomflow.ingest.store import CANNOT_UNDERSTAND, InstanceStore, Origin, Rejected

log = logging.getLogger(__name__)


def handle_requested(event: evt.Event, settings: Settings) -> None:
    """Select the tenant from the called AE title.

    A known title becomes the acceptor's; an unknown one is left to pynetdicom's own
    called-AE check (`require_called_aet`), which rejects it with "called AE not recognised".
    """
    called = event.assoc.requestor.primitive.called_ae_title.strip()
    if called in settings.tenant_by_called_ae:
        event.assoc.acceptor.ae_title = called
    else:
        log.warning("rejecting an association for unknown called AE title %r", called)


def handle_store(event: evt.Event, settings: Settings, store: InstanceStore) -> Dataset | int:
    """C-STORE: write the bytes as received, publish the event, answer with a status."""
    called_ae = event.assoc.acceptor.ae_title
    origin = Origin(
        tenant=settings.tenant_by_called_ae[called_ae],
        via="dimse",
        source_ip=event.assoc.requestor.address,
        source_ae=event.assoc.requestor.ae_title,
        called_ae=called_ae,
    )
    try:
        part10 = _received_part10(event)
    except Exception as exc:
        return _failure(CANNOT_UNDERSTAND, f"cannot read the data set: {exc}")
    try:
        store.store(part10, origin, expected_sop_class=event.context.abstract_syntax)
    except Rejected as exc:
        return _failure(exc.status, exc.comment)
    return 0x0000


def _received_part10(event: evt.Event) -> bytes:
    """The data set as received, behind its Part-10 header (`Event.encoded_dataset`'s bytes,
    made with one copy of the data set instead of two)."""
    request = cast(C_STORE, event.request)
    sop_class, sop_instance = request.AffectedSOPClassUID, request.AffectedSOPInstanceUID
    if not sop_class or not sop_instance:
        raise ValueError("the request has no Affected SOP Class or Instance UID")
    header = part10_header(sop_class, sop_instance, event.context.transfer_syntax)
    return b"".join((header, cast(BytesIO, request.DataSet).getbuffer()))


def _failure(status: int, comment: str) -> Dataset:
    response = Dataset()
    response.Status = status
    response.ErrorComment = comment[:64]
    return response
