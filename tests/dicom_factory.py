"""Synthetic DICOM instances for tests: small CT images with chosen UIDs and names."""

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid


def make_ct(
    path: Path,
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str | None = None,
    instance_number: int = 1,
    patient_name: str = "Test^Patient",
    patient_id: str = "PID-1",
    character_set: str = "ISO_IR 192",
    study_date: str = "20240102",
    modality: str = "CT",
    size: int = 64,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = character_set
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = study_date
    ds.StudyTime = "101010"
    ds.AccessionNumber = "ACC1"
    ds.StudyID = "1"
    ds.StudyDescription = "Test study"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Test series"
    ds.InstanceNumber = instance_number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [0, 0, instance_number]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    pixels = (np.arange(size * size, dtype=np.uint16).reshape(size, size) * instance_number) % 4096
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def make_cine(
    path: Path,
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    frame_size: int,
    frames: int,
    fragments_per_frame: int = 1,
    has_bot: bool = True,
    seed: int = 7,
) -> list[bytes]:
    """A multi-frame instance labelled RLE Lossless whose frames are random bytes (nothing
    here decodes them), encapsulated as asked; its frames."""
    ds = make_ct(path, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid, size=16)
    rng = np.random.default_rng(seed)
    even = frame_size - frame_size % (2 * fragments_per_frame)
    data = [rng.integers(0, 256, even, np.uint8).tobytes() for _ in range(frames)]
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.NumberOfFrames = frames
    ds.PixelData = encapsulate(data, fragments_per_frame=fragments_per_frame, has_bot=has_bot)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return data
