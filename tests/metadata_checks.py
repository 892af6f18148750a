"""What series metadata must hold: pydicom's DICOM JSON of the stored file, bulk data aside."""

from pathlib import Path

import pydicom

BULK_DATA_THRESHOLD = 1024  # values longer than this are served as BulkDataURI


def expected_json(path: Path) -> dict:
    """pydicom's DICOM JSON of a stored file, values over the threshold as bulk data."""
    return pydicom.dcmread(path).to_json_dict(
        bulk_data_threshold=BULK_DATA_THRESHOLD, bulk_data_element_handler=lambda _: "bulk"
    )


def assert_same_json(actual: dict, expected: dict) -> None:
    """The same attributes and values; bulk data as a URI of this very attribute."""
    assert actual.keys() == expected.keys()
    for tag, element in expected.items():
        if "BulkDataURI" in element:
            assert actual[tag]["BulkDataURI"].endswith(f"/bulkdata/{tag}"), tag
        else:
            assert actual[tag] == element, tag
