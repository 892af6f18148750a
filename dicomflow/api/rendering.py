"""Rendered images (PS3.18 8.3.5): one frame windowed to 8 bits, fitted to a viewport, encoded.

Grey images: Modality LUT (rescale), then the `window` parameter, else the data set's first
WindowCenter/WindowWidth (and VOILUTFunction), else the frame's minimum and maximum; MONOCHROME1
is inverted. Colour: pydicom converts YBR to RGB; PALETTE COLOR goes through its lookup table.
"""

from dataclasses import dataclass
from io import BytesIO

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut

from dicomflow.api.negotiation import NotAcceptable, parse_accept
from dicomflow.api.pixels import StoredPixels

JPEG = "image/jpeg"
PNG = "image/png"
RENDERED_MEDIA_TYPES = (JPEG, PNG)  # the first is the default
DEFAULT_QUALITY = 90
THUMBNAIL_VIEWPORT = (128, 128)
MAX_VIEWPORT = 8192
_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


@dataclass(frozen=True)
class Window:
    """A VOI window (PS3.3 C.11.2.1.2): center, width and LINEAR, LINEAR_EXACT or SIGMOID."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True)
class RenderOptions:
    media_type: str = JPEG
    window: Window | None = None
    viewport: tuple[int, int] | None = None
    quality: int = DEFAULT_QUALITY


def choose_rendered_media(accept: str | None) -> str:
    """image/jpeg or image/png, by the client's preference; NotAcceptable otherwise."""
    ranges = parse_accept(accept)
    refused = {r.media_type for r in ranges if r.q == 0}
    offered = [media for media in RENDERED_MEDIA_TYPES if media not in refused]
    for r in ranges:
        if r.q > 0 and r.media_type in offered:
            return r.media_type
        if r.q > 0 and r.media_type in ("*/*", "image/*") and offered:
            return offered[0]
    raise NotAcceptable(f"rendered images are image/jpeg or image/png, not Accept: {accept!r}")


def parse_options(
    accept: str | None,
    window: str | None,
    viewport: str | None,
    quality: str | None,
    default_viewport: tuple[int, int] | None = None,
) -> RenderOptions:
    """Rendering options from the Accept header and query parameters; ValueError when malformed."""
    return RenderOptions(
        media_type=choose_rendered_media(accept),
        window=None if window is None else parse_window(window),
        viewport=default_viewport if viewport is None else parse_viewport(viewport),
        quality=DEFAULT_QUALITY if quality is None else parse_quality(quality),
    )


def parse_window(text: str) -> Window:
    """`center,width[,function]` with function linear (default), linear-exact or sigmoid."""
    values = text.split(",")
    if len(values) not in (2, 3):
        raise ValueError(f"window must be center,width[,function], not {text!r}")
    function = _FUNCTIONS.get(values[2].strip().lower() if len(values) == 3 else "linear")
    if function is None:
        raise ValueError(f"window function must be one of {', '.join(_FUNCTIONS)}")
    center, width = (_number(value, "window") for value in values[:2])
    if not _usable_width(width, function):
        raise ValueError(f"window width {width} is too small for {function}")
    return Window(center, width, function)


def parse_viewport(text: str) -> tuple[int, int]:
    """`width,height` in pixels; the source-region form (six values) is not supported."""
    values = text.split(",")
    if len(values) != 2:
        raise ValueError(f"viewport must be width,height, not {text!r}")
    width, height = (_integer(value, "viewport", 1, MAX_VIEWPORT) for value in values)
    return width, height


def parse_quality(text: str) -> int:
    return _integer(text, "quality", 1, 100)


def render(pixels: StoredPixels, index: int, options: RenderOptions) -> bytes:
    """Frame `index` of `pixels` as an encoded image (blocking: call from a worker thread)."""
    image = to_image(pixels.decode(index), pixels.ds, options.window)
    if options.viewport:
        image = fit(image, options.viewport)
    out = BytesIO()
    if options.media_type == JPEG:
        image.save(out, "JPEG", quality=options.quality)
    else:
        image.save(out, "PNG")
    return out.getvalue()


def to_image(arr: np.ndarray, ds: Dataset, window: Window | None) -> Image.Image:
    """An 8-bit grey or RGB image of one decoded frame."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return Image.fromarray(_to_uint8(rgb, 8 * rgb.dtype.itemsize), "RGB")
    if arr.ndim == 3:
        return Image.fromarray(_to_uint8(arr, int(ds.BitsStored)), "RGB")
    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    window = window or dataset_window(ds)
    grey = apply_window(values, window) if window else _min_max(values)
    if photometric == "MONOCHROME1":
        grey = 255.0 - grey
    return Image.fromarray(np.rint(grey).astype(np.uint8), "L")


def dataset_window(ds: Dataset) -> Window | None:
    """The first WindowCenter/WindowWidth pair of the data set, when usable."""
    try:
        center, width = (_first(ds.get(keyword)) for keyword in ("WindowCenter", "WindowWidth"))
    except ValueError:
        return None
    function = str(ds.get("VOILUTFunction") or "LINEAR").upper()
    usable = np.isfinite(center) and _usable_width(width, function)
    if function not in _FUNCTIONS.values() or not usable:
        return None
    return Window(center, width, function)


def apply_window(x: np.ndarray, window: Window) -> np.ndarray:
    """Values mapped to 0-255 by the window's function (PS3.3 C.11.2.1.2)."""
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        with np.errstate(over="ignore"):  # exp overflows to inf far below the center: 0
            return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if window.function == "LINEAR_EXACT":
        y = (x - c) / w + 0.5
    elif w == 1:
        y = (x > c - 0.5).astype(np.float64)
    else:
        y = (x - (c - 0.5)) / (w - 1) + 0.5
    return np.clip(y, 0.0, 1.0) * 255.0


def fit(image: Image.Image, viewport: tuple[int, int]) -> Image.Image:
    """`image` scaled to fit `viewport`, aspect ratio kept."""
    scale = min(viewport[0] / image.width, viewport[1] / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def _first(value: object) -> float:
    """The first value of a DS; ValueError when absent or malformed."""
    return float(str(value[0] if isinstance(value, MultiValue) else value))


def _usable_width(width: float, function: str) -> bool:
    return bool(np.isfinite(width)) and (width >= 1 if function == "LINEAR" else width > 0)


def _min_max(x: np.ndarray) -> np.ndarray:
    low, high = float(x.min()), float(x.max())
    if high == low:
        return np.zeros_like(x)
    return (x - low) * (255.0 / (high - low))


def _to_uint8(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    scaled = np.clip(arr.astype(np.float64), 0, 2**bits - 1) * (255.0 / (2**bits - 1))
    return np.rint(scaled).astype(np.uint8)


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise ValueError(f"{name}: {text!r} is not a finite number")
    return value


def _integer(text: str, name: str, low: int, high: int) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, not {text!r}")
    return int(text)
