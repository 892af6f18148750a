"""An instance's DICOM JSON is pydicom's, element by element, whatever was remembered from the
instances converted before it."""

from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from dicomflow.core.dicom_json import BULK_DATA_THRESHOLD, instance_json
from dicomflow.core.series_metadata import read_instance
from tests.dicom_factory import make_ct

PYDICOM_DATA = Path(pydicom.__file__).parent / "data"  # its shipped files (no download)
URL = "/dicom-web/studies/1/series/2/instances/3"


def pydicoms_json(path: str | Path) -> dict[str, Any] | None:
    """pydicom's DICOM JSON of a file, bulk data as "bulk"; None if pydicom cannot make it."""
    try:
        return pydicom.dcmread(path).to_json_dict(
            bulk_data_threshold=BULK_DATA_THRESHOLD, bulk_data_element_handler=lambda _: "bulk"
        )
    except Exception:
        return None


def with_bulk_marked(model: Any) -> Any:
    """`model` with every BulkDataURI (at any depth) replaced by "bulk"."""
    if isinstance(model, dict):
        return {k: "bulk" if k == "BulkDataURI" else with_bulk_marked(v) for k, v in model.items()}
    if isinstance(model, list):
        return [with_bulk_marked(v) for v in model]
    return model


def ours(path: str | Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        return instance_json(read_instance(fh), URL)


EXPECTED = {
    path: model
    for path in sorted(PYDICOM_DATA.glob("test_files/*.dcm"))
    + sorted(PYDICOM_DATA.glob("charset_files/*.dcm"))
    if (model := pydicoms_json(path)) is not None
}


@pytest.mark.filterwarnings("ignore")
def test_every_test_file_twice_is_pydicoms_json() -> None:
    """Each file once with what the files before it left remembered, then again with its own
    elements remembered."""
    assert len(EXPECTED) > 50
    for _ in range(2):
        for path, expected in EXPECTED.items():
            assert with_bulk_marked(ours(path)) == expected, path


def test_top_level_and_nested_bulk_data_uris_name_their_element(tmp_path: Path) -> None:
    path = tmp_path / "icon.dcm"
    ds = make_ct(path, study_uid="1.2", series_uid="1.2.3")
    icon = Dataset()
    icon.BitsAllocated = 8
    icon.PixelData = bytes(2 * BULK_DATA_THRESHOLD)
    ds.IconImageSequence = [icon]
    ds.save_as(path, enforce_file_format=True)
    model = ours(path)
    assert model["7FE00010"]["BulkDataURI"] == f"{URL}/bulkdata/7FE00010"
    nested = model["00880200"]["Value"][0]["7FE00010"]
    assert nested["BulkDataURI"] == f"{URL}/bulkdata/00880200/1/7FE00010"


def test_values_of_each_instance_and_character_set_are_its_own(tmp_path: Path) -> None:
    """Instances of one series share most values: those they do not share, and the same bytes
    under another character set, are never served from another instance's."""
    latin1, cyrillic = tmp_path / "latin1.dcm", tmp_path / "cyrillic.dcm"
    make_ct(
        latin1,
        study_uid="1.2",
        series_uid="1.2.3",
        patient_name="Buc^J\u00e9r\u00f4me",
        character_set="ISO_IR 100",
        instance_number=1,
    )
    cyrillic.write_bytes(latin1.read_bytes().replace(b"ISO_IR 100", b"ISO_IR 144"))
    second = tmp_path / "second.dcm"
    make_ct(
        second,
        study_uid="1.2",
        series_uid="1.2.3",
        patient_name="Buc^J\u00e9r\u00f4me",
        character_set="ISO_IR 100",
        instance_number=2,
    )
    for path in (latin1, cyrillic, second, latin1):
        assert with_bulk_marked(ours(path)) == pydicoms_json(path), path
    assert ours(latin1)["00100010"] != ours(cyrillic)["00100010"]
    assert ours(second)["00200013"]["Value"] == [2]
