"""C-STORE success responses encoded directly are the bytes pynetdicom sends for them."""

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom.uid import CTImageStorage, generate_uid
from pynetdicom import evt
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from dicomflow.ingest.store_response import DirectStoreResponses, plain_success_command

MAX_PDU = 16382


def response(sop_uid: str, message_id: int = 7, status: int = 0x0000, **extra: Any) -> C_STORE:
    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.MessageIDBeingRespondedTo = message_id
    primitive.AffectedSOPClassUID = CTImageStorage
    primitive.AffectedSOPInstanceUID = sop_uid
    primitive.Status = status
    for name, value in extra.items():
        setattr(primitive, name, value)
    return primitive


def pynetdicom_pdvs(primitive: C_STORE, context_id: int = 1) -> list[list[tuple[int, bytes]]]:
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    return [p.presentation_data_value_list for p in message.encode_msg(context_id, MAX_PDU)]


@dataclass
class RecordingAssociation:
    """What the DIMSE provider asks of its association; the PDUs it sends are kept."""

    handlers: dict[evt.NotificationEvent, list[Any]] = field(default_factory=dict)
    is_requestor: bool = False
    requestor: SimpleNamespace = field(
        default_factory=lambda: SimpleNamespace(maximum_length=MAX_PDU)
    )
    sent: list[P_DATA] = field(default_factory=list)
    # what pynetdicom's event trigger swaps in and out while handlers run
    _abort_nonblocking: Any = None
    _abort_blocking: Any = None

    def get_handlers(self, event: evt.NotificationEvent) -> list[Any]:
        return self.handlers.get(event, [])

    @property
    def dul(self) -> SimpleNamespace:
        return SimpleNamespace(send_pdu=self.sent.append)


@pytest.mark.parametrize("sop_uid", ["1.2.3", "1.2.34", generate_uid(), "1." + "2" * 62])
@pytest.mark.parametrize("message_id", [1, 0xFFFF])
def test_success_command_is_pynetdicoms(sop_uid: str, message_id: int) -> None:
    primitive = response(sop_uid, message_id)
    command = plain_success_command(primitive)
    assert command is not None
    assert [[(1, b"\x03" + command)]] == pynetdicom_pdvs(primitive)


@pytest.mark.parametrize(
    "primitive",
    [
        response("1.2.3", status=0xA700, ErrorComment="disk full"),
        response("1.2.3", status=0xB000),
        response("1.2.3", OffendingElement=[0x00100010]),
        C_STORE(),
    ],
    ids=["failure", "warning", "offending-element", "request"],
)
def test_anything_else_is_left_to_pynetdicom(primitive: C_STORE) -> None:
    assert plain_success_command(primitive) is None


@pytest.mark.parametrize(
    "primitive",
    [response(generate_uid()), response("1.2.3", status=0xA700, ErrorComment="disk full")],
    ids=["direct", "through-pynetdicom"],
)
def test_the_provider_sends_what_pynetdicom_sends(primitive: C_STORE) -> None:
    assoc = RecordingAssociation()
    DirectStoreResponses(assoc).send_msg(primitive, 3)  # type: ignore[arg-type]
    assert [p.presentation_data_value_list for p in assoc.sent] == pynetdicom_pdvs(primitive, 3)


def test_the_debug_log_gets_pynetdicoms_message() -> None:
    described = []
    assoc = RecordingAssociation({evt.EVT_DIMSE_SENT: [(described.append, None)]})
    DirectStoreResponses(assoc).send_msg(response("1.2.3"), 1)  # type: ignore[arg-type]
    assert len(assoc.sent) == 1
    assert [type(e.message) for e in described] == [C_STORE_RSP]
