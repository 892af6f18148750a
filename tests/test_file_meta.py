"""The C-STORE Part-10 header is the one pynetdicom's `Event.encoded_dataset` writes."""

import io

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from pynetdicom.dsutils import create_file_meta, encode_file_meta

from dicomflow.ingest.file_meta import PREAMBLE_AND_PREFIX, part10_header


@pytest.mark.parametrize(
    "sop_uid",
    ["1.2.3", "1.2.34", generate_uid(), "1." + "2" * 62],
    ids=["odd", "even", "generated", "64-chars"],
)
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEGBaseline8Bit])
def test_header_is_pynetdicoms(sop_uid: str, syntax: str) -> None:
    expected = create_file_meta(
        sop_class_uid=CTImageStorage, sop_instance_uid=sop_uid, transfer_syntax=syntax
    )
    header = part10_header(CTImageStorage, sop_uid, syntax)
    assert header == PREAMBLE_AND_PREFIX + encode_file_meta(expected)
    meta = pydicom.dcmread(io.BytesIO(header)).file_meta
    assert meta.MediaStorageSOPInstanceUID == sop_uid
    assert meta.TransferSyntaxUID == syntax


@pytest.mark.parametrize("sop_uid", ["1.2.\u00e9", "1." * 40000], ids=["not-ascii", "too-long"])
def test_unencodable_value_is_a_value_error(sop_uid: str) -> None:
    with pytest.raises(ValueError):
        part10_header(CTImageStorage, sop_uid, ExplicitVRLittleEndian)
