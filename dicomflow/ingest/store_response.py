"""C-STORE success responses encoded directly.

pynetdicom builds each response's command set as a pydicom Dataset, element by element, and
then encodes it: ~0.25 ms per C-STORE, on the path the next C-STORE waits for. A success
response is always the same seven elements (PS3.7 9.3.1.2), encoded here (Implicit VR Little
Endian, PS3.7 6.3.1); any other message, or a response with more in it, goes through
pynetdicom, as does every message while its debug log describes them.
"""

import struct

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE, DimsePrimitiveType
from pynetdicom.pdu_primitives import P_DATA

from dicomflow.ingest.file_meta import encoded_uid

C_STORE_RSP_COMMAND = 0x8001
NO_DATA_SET = 0x0101
SUCCESS = 0x0000
LAST_COMMAND_FRAGMENT = b"\x03"  # message control header: command, last fragment (PS3.8 E.2)
PDV_OVERHEAD = 6  # a PDV item's length and context ID, and the message control header


def plain_success_command(primitive: DimsePrimitiveType) -> bytes | None:
    """The encoded command set of `primitive` if it is a C-STORE success response with
    nothing but its identifiers, else None."""
    if (
        not isinstance(primitive, C_STORE)
        or primitive.MessageIDBeingRespondedTo is None
        or primitive.Status != SUCCESS
        or primitive.ErrorComment is not None
        or primitive.OffendingElement is not None
        or not primitive.AffectedSOPClassUID
        or not primitive.AffectedSOPInstanceUID
    ):
        return None
    elements = b"".join(
        (
            _element(0x0002, encoded_uid(primitive.AffectedSOPClassUID)),
            _element(0x0100, struct.pack("<H", C_STORE_RSP_COMMAND)),
            _element(0x0120, struct.pack("<H", primitive.MessageIDBeingRespondedTo)),
            _element(0x0800, struct.pack("<H", NO_DATA_SET)),
            _element(0x0900, struct.pack("<H", SUCCESS)),
            _element(0x1000, encoded_uid(primitive.AffectedSOPInstanceUID)),
        )
    )
    return _element(0x0000, struct.pack("<I", len(elements))) + elements


class DirectStoreResponses(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider, sending plain C-STORE success responses encoded directly."""

    def send_msg(self, primitive: DimsePrimitiveType, context_id: int) -> None:
        command = plain_success_command(primitive)
        if (
            command is None
            or self.assoc.get_handlers(evt.EVT_DIMSE_SENT)
            or 0 < self.maximum_pdu_size < len(command) + PDV_OVERHEAD
        ):
            super().send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, LAST_COMMAND_FRAGMENT + command))
        self.dul.send_pdu(pdata)


def _element(element: int, value: bytes) -> bytes:
    """One Implicit VR Little Endian element of the command group (0000)."""
    return struct.pack("<HHI", 0x0000, element, len(value)) + value
