"""Generate the benchmark corpus: synthetic CT series, Explicit VR Little Endian, fixed UIDs.

    .venv/bin/python bench/make_corpus.py [FOLDER]      (default: bench/output/corpus)

writes two series, each in its own folder with a `manifest.json` (UIDs, patient, count):

    ct500/  500 CT images, 512x512, 16 bits allocated (~0.5 MB each, ~254 MB), study 1
    ct50/    50 CT images of the same kind in a second study (DICOMweb benchmark)

UIDs come from a hash of fixed names (pydicom's `generate_uid` with entropy sources), so
every run writes the same files; another `variant` gives the same images under other
UIDs (the C-STORE benchmark sends a fresh study on each repetition). A series whose
manifest matches is not written again.
"""

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

BENCH = Path(__file__).resolve().parent
DEFAULT_FOLDER = BENCH / "output" / "corpus"
SIZE = 512
LAYOUT_VERSION = 1  # bump when the generated files change


@dataclass(frozen=True)
class SeriesSpec:
    """What to generate: `name` and `variant` determine every UID."""

    name: str
    count: int
    patient_id: str
    patient_name: str
    variant: str = "base"
    series_number: int = 1


@dataclass(frozen=True)
class Manifest:
    """A generated series, as the benchmarks read it back."""

    name: str
    variant: str
    count: int
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    layout_version: int = LAYOUT_VERSION

    @property
    def bytes_per_instance(self) -> int:
        return SIZE * SIZE * 2


CT500 = SeriesSpec("ct500", 500, "BENCH-CT500", "Bench^CT Five Hundred")
CT50 = SeriesSpec("ct50", 50, "BENCH-CT50", "Bench^CT Fifty", series_number=2)


def uid(*names: object) -> str:
    return generate_uid(entropy_srcs=["dicomflow-bench", *map(str, names)])


def plan(spec: SeriesSpec) -> Manifest:
    key = (spec.variant, spec.name)
    return Manifest(
        name=spec.name,
        variant=spec.variant,
        count=spec.count,
        patient_id=spec.patient_id,
        study_uid=uid(*key, "study"),
        series_uid=uid(*key, "series"),
        sop_uids=[uid(*key, "sop", i) for i in range(1, spec.count + 1)],
    )


def read_manifest(folder: Path) -> Manifest | None:
    try:
        data = json.loads((folder / "manifest.json").read_text())
        return Manifest(**data)
    except (OSError, ValueError, TypeError):
        return None


class Phantom:
    """A CT-like slice: air, an elliptic body with lungs and a spine, soft-tissue noise."""

    def __init__(self) -> None:
        y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
        self.x = (x - SIZE / 2) / (SIZE / 2)
        self.y = (y - SIZE / 2) / (SIZE / 2)
        self.body = (self.x / 0.85) ** 2 + (self.y / 0.62) ** 2 <= 1.0
        self.spine = (self.x**2 + (self.y - 0.42) ** 2) <= 0.012

    def slice(self, index: int, count: int) -> bytes:
        """Stored values (HU + 1024, 12 bits used) of slice `index`, little endian uint16."""
        rng = np.random.default_rng(index)
        z = index / max(count - 1, 1)
        lung_r = 0.18 + 0.12 * np.sin(np.pi * z)
        lungs = (((self.x - 0.35) / lung_r) ** 2 + (self.y / (lung_r * 1.6)) ** 2 <= 1.0) | (
            ((self.x + 0.35) / lung_r) ** 2 + (self.y / (lung_r * 1.6)) ** 2 <= 1.0
        )
        hu = np.full((SIZE, SIZE), -1000.0, dtype=np.float32)
        hu[self.body] = 40.0
        hu[lungs & self.body] = -820.0
        hu[self.spine] = 700.0
        hu += rng.normal(0.0, 18.0, size=hu.shape).astype(np.float32)
        stored = np.clip(hu + 1024.0, 0, 4095).astype("<u2")
        return stored.tobytes()


def _template(spec: SeriesSpec, manifest: Manifest) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240115"
    ds.StudyTime = "101500"
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "101712.500000"
    ds.AccessionNumber = f"ACC-{spec.name.upper()}"[:16]
    ds.Modality = "CT"
    ds.Manufacturer = "dicomflow bench"
    ds.InstitutionName = "Benchmark Hospital"
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.StationName = "BENCHCT01"
    ds.StudyDescription = "CT CHEST (benchmark)"
    ds.SeriesDescription = f"Axial 1.0 mm ({spec.name})"
    ds.ManufacturerModelName = "Synthetic 64"
    ds.ProcedureCodeSequence = Sequence([Dataset()])
    code = ds.ProcedureCodeSequence[0]
    code.CodeValue = "CTCHEST"
    code.CodingSchemeDesignator = "99BENCH"
    code.CodeMeaning = "CT chest"
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.PatientAge = "054Y"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500.0"
    ds.SoftwareVersions = "bench-1"
    ds.ReconstructionDiameter = "350.0"
    ds.GantryDetectorTilt = "0.0"
    ds.TableHeight = "150.0"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "200"
    ds.Exposure = "100"
    ds.FilterType = "BODY"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = manifest.study_uid
    ds.SeriesInstanceUID = manifest.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = spec.series_number
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = uid(spec.variant, spec.name, "frame-of-reference")
    ds.PositionReferenceIndicator = "SN"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = SIZE
    ds.PixelSpacing = [0.68359375, 0.68359375]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def ensure_series(root: Path, spec: SeriesSpec, phantom: Phantom | None = None) -> Manifest:
    """Write the series to its folder under `root` unless it is there already."""
    manifest = plan(spec)
    folder = series_folder(root, manifest)
    if read_manifest(folder) == manifest and len(list(folder.glob("*.dcm"))) == spec.count:
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").unlink(missing_ok=True)
    for stale in folder.glob("*.dcm"):
        stale.unlink()
    phantom = phantom or Phantom()
    ds = _template(spec, manifest)
    for index, sop_uid in enumerate(manifest.sop_uids):
        z = -250.0 + index * 1.0
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [-175.0, -175.0, z]
        ds.SliceLocation = str(z)
        ds.PixelData = phantom.slice(index, spec.count)
        ds["PixelData"].VR = "OW"
        dcmwrite(folder / f"{index + 1:04d}.dcm", ds, enforce_file_format=True)
    (folder / "manifest.json").write_text(json.dumps(asdict(manifest), indent=1))
    return manifest


def series_folder(root: Path, manifest: Manifest) -> Path:
    name = manifest.name if manifest.variant == "base" else f"{manifest.variant}-{manifest.name}"
    return root / name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    args = parser.parse_args(argv)
    phantom = Phantom()
    for spec in (CT500, CT50):
        manifest = ensure_series(args.folder, spec, phantom)
        folder = series_folder(args.folder, manifest)
        size = sum(os.path.getsize(p) for p in folder.glob("*.dcm"))
        print(
            f"{folder}: {manifest.count} instances, {size / 1e6:.1f} MB, "
            f"study {manifest.study_uid}, series {manifest.series_uid}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
