"""Unit tests of WADO-RS pixel handling: frames, transcoding, bulk data paths and rendering."""

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomflow.api.bulkdata import bulk_value, parse_path
from dicomflow.api.frame_layouts import (
    ENCAPSULATED_VALUE_LIMIT,
    EncapsulatedFrames,
    FragmentedFrames,
    FrameLayout,
    FrameLayouts,
    NativeFrames,
    layout_of,
)
from dicomflow.api.frame_locator import HEAD_SIZE, MAX_NESTING, locate_frames
from dicomflow.api.negotiation import NotAcceptable
from dicomflow.api.pixels import PIXEL_DATA, CannotDecode, NotFound, StoredPixels, open_pixels
from dicomflow.api.rendering import (
    RenderOptions,
    Window,
    apply_window,
    choose_rendered_media,
    parse_options,
    render,
)
from dicomflow.api.retrieve import parse_frame_list
from dicomflow.api.transcode import can_transcode, transcode_instance
from dicomflow.core.storage import FileIdentity, LocalStorage
from tests.dicom_factory import make_cine, make_ct


def shipped(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path, f"{name} is not shipped with pydicom"
    return Path(path)


def multiframe(
    tmp_path: Path, frames: int = 4, size: int = 16, bits: int = 16, syntax: str = ""
) -> tuple[Path, np.ndarray]:
    """A multi-frame CT-like file with distinct frames; its pixel array."""
    path = tmp_path / "mf.dcm"
    ds = make_ct(path, study_uid="1.2.3", series_uid="1.2.3.4", size=size)
    dtype = np.uint16 if bits == 16 else np.uint8
    arr = (np.arange(frames * size * size).reshape(frames, size, size) % 251).astype(dtype)
    if bits == 1:
        arr = (arr % 2).astype(np.uint8)
        ds.PixelData = pydicom.pixels.pack_bits(arr)
    else:
        ds.PixelData = arr.tobytes()
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.NumberOfFrames = frames
    if syntax:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, implicit_vr=syntax == ImplicitVRLittleEndian, enforce_file_format=True)
    return path, arr


# --- frames ----------------------------------------------------------------------------------


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_native_frames_are_sliced_at_their_offsets(tmp_path: Path, syntax: str) -> None:
    path, arr = multiframe(tmp_path, frames=5, size=300, syntax=syntax)  # > the defer size
    with open(path, "rb") as fh:
        pixels = open_pixels(fh)
        assert pixels.offset is not None and pixels.frames == 5
        for number in (1, 3, 5):
            assert pixels.native_frame(pixels.check_frame(number)) == arr[number - 1].tobytes()


def open_with_identity(path: Path) -> StoredPixels:
    fh = open(path, "rb")  # noqa: SIM115 -- closed by the caller through pixels.fh
    return open_pixels(fh, FileIdentity.of(fh.fileno()))


def layout_read(path: Path) -> FrameLayout | None:
    pixels = open_with_identity(path)
    with pixels.fh:
        return layout_of(pixels)


def read_frames(path: Path, layout: FrameLayout, indexes: list[int]) -> list[bytes] | None:
    path.read_bytes()  # now in the page cache
    frames = layout.read_if_cached(LocalStorage(path.parent), path.name, indexes, 1 << 30)
    return None if frames is None else [bytes(frame) for frame in frames]


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_a_layout_locates_the_native_frames(tmp_path: Path, syntax: str) -> None:
    path, arr = multiframe(tmp_path, frames=5, size=300, syntax=syntax)
    layout = layout_read(path)
    assert isinstance(layout, NativeFrames) and layout.frames == 5 and layout.syntax == syntax
    indexes = [layout.index(number) for number in (1, 3, 5)]
    assert read_frames(path, layout, indexes) == [arr[i].tobytes() for i in (0, 2, 4)]
    with pytest.raises(NotFound):
        layout.index(6)
    assert layout.read_if_cached(LocalStorage(tmp_path), path.name, [0, 1], 2 * 180_000 - 1) is None


def test_a_replaced_file_is_not_read_with_the_old_layout(tmp_path: Path) -> None:
    path, _ = multiframe(tmp_path, frames=2, size=300)
    layout = layout_read(path)
    assert layout is not None
    multiframe(tmp_path, frames=2, size=300, syntax=ImplicitVRLittleEndian)  # same name
    assert read_frames(path, layout, [0]) is None


@pytest.mark.parametrize("name", ["SC_rgb_rle_2frame.dcm", "MR_small_bigendian.dcm", "deflated"])
def test_no_layout_from_pydicom_for_values_it_read(tmp_path: Path, name: str) -> None:
    """Big endian, deflated (its offsets are in the inflated stream) and encapsulated pixel data
    pydicom has read whole: no layout (the frame locator finds encapsulated ones)."""
    if name == "deflated":
        path, _ = multiframe(tmp_path, syntax=DeflatedExplicitVRLittleEndian)
    else:
        path = shipped(name)
    assert layout_read(path) is None


def test_no_layout_for_frames_of_bits(tmp_path: Path) -> None:
    path, _ = multiframe(tmp_path, frames=3, size=5, bits=1)
    assert layout_read(path) is None
    with open(path, "rb") as fh:
        assert layout_of(open_pixels(fh)) is None  # no identity: no layout either


def test_frame_layouts_keep_the_most_recently_used(tmp_path: Path) -> None:
    path, _ = multiframe(tmp_path, frames=2, size=300)
    layout = layout_read(path)
    assert layout is not None
    layouts = FrameLayouts(max_entries=2)
    layouts.put("a", layout)
    layouts.put("b", layout)
    assert layouts.get("a") is layout  # now the most recent
    layouts.put("c", layout)
    assert layouts.get("b") is None and layouts.get("a") is layout and layouts.get("c") is layout
    assert len(layouts) == 2


def test_native_frames_in_the_page_cache_are_read_without_waiting(tmp_path: Path) -> None:
    path, arr = multiframe(tmp_path, frames=3, size=300)
    pixels = open_with_identity(path)
    with pixels.fh:
        for index in range(3):
            assert bytes(pixels.native_frame_if_cached(index) or b"") == arr[index].tobytes()
        os.fsync(pixels.fh.fileno())  # clean pages can be dropped
        os.posix_fadvise(pixels.fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert pixels.native_frame_if_cached(1) is None
        assert pixels.native_frame(1) == arr[1].tobytes()


def pydicom_layout(path: Path) -> FrameLayout | None:
    """The layout as pydicom reads the file, every value left in it (so its offset is known)."""
    try:
        ds = pydicom.dcmread(path, defer_size=1)
    except InvalidDicomError:  # no Part 10 header: never stored as such
        return None
    raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if not isinstance(raw, RawDataElement) or raw.value_tell is None or syntax is None:
        return None
    with open(path, "rb") as fh:
        identity = FileIdentity.of(fh.fileno())
        return layout_of(StoredPixels(fh, ds, syntax, raw.value_tell, raw.length, identity))


def pydicom_frames(path: Path) -> list[bytes]:
    """The frames as the path through pydicom serves them."""
    pixels = open_with_identity(path)
    with pixels.fh:
        read = pixels.stored_frame if pixels.encapsulated else pixels.native_frame
        return [read(index) for index in range(pixels.frames)]


def located(path: Path, head_size: int = HEAD_SIZE) -> FrameLayout | None:
    with open(path, "rb") as fh:
        return locate_frames(fh.read(head_size), FileIdentity.of(fh.fileno()))


@pytest.mark.filterwarnings("ignore")  # pydicom's complaints about some of its test files
def test_frames_are_located_as_pydicom_reads_them(tmp_path: Path) -> None:
    """Every file pydicom ships: the layout from the first bytes is pydicom's whenever its
    Pixel Data starts within them, else none (then pydicom reads the file); the frames read
    with it are pydicom's, native and encapsulated."""
    found = {NativeFrames: 0, EncapsulatedFrames: 0}
    for path in sorted(shipped("CT_small.dcm").parent.glob("*.dcm")):
        with warnings.catch_warnings(record=True) as complaints:
            warnings.simplefilter("always")
            expected = pydicom_layout(path)
        guessed = any("VR" in str(complaint.message) for complaint in complaints)
        within = expected is not None and expected.offset < HEAD_SIZE
        layout = located(path)
        if guessed:  # encoded otherwise than its transfer syntax says: left to pydicom
            assert layout in (None, expected), path.name
        else:
            assert layout == (expected if within else None), path.name
        if layout is not None:
            found[type(layout)] += 1
            indexes = list(range(layout.frames))
            assert read_frames(path, layout, indexes) == pydicom_frames(path), path.name
    assert found[NativeFrames] >= 10 and found[EncapsulatedFrames] >= 10
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        path, _ = multiframe(tmp_path, frames=3, size=300, syntax=syntax)
        layout = located(path)
        assert layout is not None and layout == pydicom_layout(path) and layout.frames == 3


def large_encapsulated(
    tmp_path: Path, frames: int, fragments_per_frame: int, has_bot: bool
) -> tuple[Path, list[bytes]]:
    """A file whose Pixel Data value is over ENCAPSULATED_VALUE_LIMIT; its frames."""
    path = tmp_path / "cine.dcm"
    size = ENCAPSULATED_VALUE_LIMIT // frames + 2 * fragments_per_frame * (1 + frames)
    data = make_cine(
        path,
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        sop_uid="1.2.3.4.5",
        frame_size=size,
        frames=frames,
        fragments_per_frame=fragments_per_frame,
        has_bot=has_bot,
    )
    return path, data


@pytest.mark.parametrize(
    ("frames", "fragments_per_frame", "has_bot"),
    [(5, 1, True), (5, 3, True), (5, 1, False), (1, 3, False)],
)
def test_frames_of_a_large_encapsulated_value_are_read_alone(
    tmp_path: Path, frames: int, fragments_per_frame: int, has_bot: bool
) -> None:
    """An offset table, one fragment a frame or a single frame: each frame's fragments are
    remembered, and read as pydicom's `get_frame` reads them."""
    path, data = large_encapsulated(tmp_path, frames, fragments_per_frame, has_bot)
    assert path.stat().st_size > ENCAPSULATED_VALUE_LIMIT
    layout = layout_read(path)
    assert isinstance(layout, FragmentedFrames) and layout.frames == frames
    indexes = list(range(frames))[::-1]
    assert read_frames(path, layout, indexes) == [data[i] for i in indexes]
    assert read_frames(path, layout, indexes) == [pydicom_frames(path)[i] for i in indexes]
    assert layout.read_if_cached(LocalStorage(tmp_path), path.name, [0], len(data[0]) - 1) is None


def test_fragments_not_told_apart_without_an_offset_table_are_left_to_pydicom(
    tmp_path: Path,
) -> None:
    """Several frames in more fragments, no offset table: only the frames' own markers
    (JPEG's) tell where each ends, which pydicom looks for when it reads the file."""
    path, _ = large_encapsulated(tmp_path, 4, fragments_per_frame=2, has_bot=False)
    assert layout_read(path) is None


def test_frames_are_not_located_beyond_the_bytes_given() -> None:
    path = shipped("CT_small.dcm")
    assert located(path) is not None
    assert located(path, 1000) is None  # the header is longer


def test_deeply_nested_sequences_are_left_to_pydicom(tmp_path: Path) -> None:
    path, _ = multiframe(tmp_path, frames=1, size=300)
    ds = pydicom.dcmread(path)
    inner = ds
    for _ in range(MAX_NESTING + 1):  # each of undefined length, its item too
        item = Dataset()
        item.is_undefined_length_sequence_item = True
        inner.ReferencedImageSequence = [item]
        inner["ReferencedImageSequence"].is_undefined_length = True
        inner = item
    ds.save_as(path, enforce_file_format=True)
    with open(path, "rb") as fh:
        assert open_pixels(fh).frames == 1
    assert located(path) is None


def test_one_bit_frames_not_on_byte_boundaries(tmp_path: Path) -> None:
    path, arr = multiframe(tmp_path, frames=3, size=5, bits=1)  # 25 bits a frame
    with open(path, "rb") as fh:
        pixels = open_pixels(fh)
        for index in range(3):
            frame = np.unpackbits(
                np.frombuffer(pixels.native_frame(index), np.uint8), bitorder="little"
            )
            assert np.array_equal(frame[:25], arr[index].ravel())


def test_frame_numbers_out_of_range_are_not_found(tmp_path: Path) -> None:
    path, _ = multiframe(tmp_path, frames=2)
    with open(path, "rb") as fh:
        pixels = open_pixels(fh)
        for number in (0, 3):
            with pytest.raises(NotFound):
                pixels.check_frame(number)


def test_encapsulated_frames_are_the_stored_bitstreams() -> None:
    path = shipped("SC_rgb_rle_2frame.dcm")
    ds = pydicom.dcmread(path)
    expected = list(generate_frames(ds.PixelData, number_of_frames=2))
    with open(path, "rb") as fh:
        pixels = open_pixels(fh)
        assert pixels.encapsulated
        assert [pixels.stored_frame(0), pixels.stored_frame(1)] == expected
        assert pixels.decoded_frame(1) == ds.pixel_array[1].tobytes()


def test_decoded_frames_are_little_endian() -> None:
    path = shipped("MR_small_bigendian.dcm")
    with open(path, "rb") as fh:
        pixels = open_pixels(fh)
        frame = np.frombuffer(pixels.decoded_frame(0), "<i2").reshape(64, 64)
    assert np.array_equal(frame, pydicom.dcmread(path).pixel_array)


def test_an_instance_without_pixel_data_has_no_frames() -> None:
    with open(shipped("rtplan.dcm"), "rb") as fh, pytest.raises(NotFound):
        open_pixels(fh)


@pytest.mark.parametrize("text", ["", "1,", "0", "a", "1;2", "01", "-1"])
def test_malformed_frame_lists(text: str) -> None:
    with pytest.raises(ValueError):
        parse_frame_list(text)


def test_frame_list_keeps_the_order_asked() -> None:
    assert parse_frame_list("3,1,3") == [3, 1, 3]


# --- transcoding -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "JPEG2000.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_implicit.dcm",
        "image_dfl.dcm",
        "MR_small_bigendian.dcm",
        "rtdose_expb.dcm",
        "SC_rgb_small_odd_big_endian.dcm",
    ],
)
def test_transcoding_to_explicit_little_endian_keeps_pixels_and_uids(name: str) -> None:
    original = pydicom.dcmread(shipped(name))
    with open(shipped(name), "rb") as fh:
        result = pydicom.dcmread(io.BytesIO(transcode_instance(fh)))
    assert result.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert result.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(result.pixel_array, original.pixel_array)


def test_undecodable_pixel_data_cannot_be_transcoded() -> None:
    with open(shipped("JPEG-lossy.dcm"), "rb") as fh, pytest.raises(CannotDecode):
        transcode_instance(fh)


def test_transcoding_targets_explicit_little_endian_only() -> None:
    assert can_transcode("1.2.840.10008.1.2.5", ExplicitVRLittleEndian)
    assert can_transcode("1.2.840.10008.1.2.4.90", ExplicitVRLittleEndian)
    assert can_transcode(ImplicitVRLittleEndian, ExplicitVRLittleEndian)
    assert not can_transcode(ExplicitVRLittleEndian, "1.2.840.10008.1.2.4.90")
    assert not can_transcode("1.2.840.10008.1.2.4.100", ExplicitVRLittleEndian)  # MPEG-2


# --- bulk data paths -------------------------------------------------------------------------


def test_bulk_data_paths_into_sequences() -> None:
    item = Dataset()
    item.add_new(0x00420011, "OB", b"\x01\x02" * 1000)
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.ContentSequence = [Dataset(), item]
    ds.PatientName = "Not^Binary"
    steps, tag = parse_path("0040A730/2/00420011")
    assert bulk_value(ds, steps, tag) == b"\x01\x02" * 1000
    for path in ("0040A730/3/00420011", "00100010", "00420011"):
        with pytest.raises(NotFound):
            bulk_value(ds, *parse_path(path))


@pytest.mark.parametrize("path", ["7FE0", "0040A730/0/00420011", "0040A730/1", "x/1/00420011"])
def test_malformed_bulk_data_paths(path: str) -> None:
    with pytest.raises(ValueError):
        parse_path(path)


# --- rendering -------------------------------------------------------------------------------


def test_rendered_media_follow_accept() -> None:
    assert choose_rendered_media(None) == "image/jpeg"
    assert choose_rendered_media("image/png") == "image/png"
    assert choose_rendered_media("image/*, image/jpeg;q=0") == "image/png"
    assert choose_rendered_media("image/gif, image/png;q=0.5") == "image/png"
    with pytest.raises(NotAcceptable):
        choose_rendered_media("image/gif")


@pytest.mark.parametrize(
    ("window", "viewport", "quality"),
    [("40", None, None), ("40,0", None, None), ("40,400,cubic", None, None),
     (None, "10", None), (None, "0,10", None), (None, "1,2,3,4,5,6", None),
     (None, None, "0"), (None, None, "101"), (None, None, "high")],
)  # fmt: skip
def test_malformed_rendering_parameters(
    window: str | None, viewport: str | None, quality: str | None
) -> None:
    with pytest.raises(ValueError):
        parse_options(None, window, viewport, quality)


def test_linear_window_follows_the_standard() -> None:
    x = np.array([-1000.0, -160.0, 40.0, 240.0, 1000.0])
    y = apply_window(x, Window(40, 400))
    assert y[0] == 0 and y[-1] == 255
    assert abs(y[2] - 127.5) < 1
    sigmoid = apply_window(np.array([40.0]), Window(40, 400, "SIGMOID"))
    assert sigmoid[0] == pytest.approx(127.5)


def test_render_fits_the_viewport_and_encodes(tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    make_ct(path, study_uid="1.2.3", series_uid="1.2.3.4", size=64)
    with open(path, "rb") as fh:
        pixels = open_pixels(fh)
        jpeg = render(pixels, 0, RenderOptions(viewport=(32, 16)))
        png = render(pixels, 0, RenderOptions(media_type="image/png"))
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    assert Image.open(io.BytesIO(jpeg)).size == (16, 16)
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size, image.mode) == ("PNG", (64, 64), "L")


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    ds = make_ct(path, study_uid="1.2.3", series_uid="1.2.3.4", size=8)
    options = RenderOptions(media_type="image/png", window=Window(100, 100))
    with open(path, "rb") as fh:
        grey = np.asarray(Image.open(io.BytesIO(render(open_pixels(fh), 0, options))))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(path, enforce_file_format=True)
    with open(path, "rb") as fh:
        inverted = np.asarray(Image.open(io.BytesIO(render(open_pixels(fh), 0, options))))
    assert np.array_equal(inverted, 255 - grey)


@pytest.mark.parametrize(
    "name", ["examples_palette.dcm", "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle_16bit.dcm"]
)
def test_colour_images_render_as_rgb(name: str) -> None:
    with open(shipped(name), "rb") as fh:
        image = Image.open(io.BytesIO(render(open_pixels(fh), 0, RenderOptions())))
    assert image.mode == "RGB"
