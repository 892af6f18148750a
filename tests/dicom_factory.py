"""Synthetic DICOM instances for tests: small CT images with chosen UIDs and names."""

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


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
