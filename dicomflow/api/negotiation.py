"""WADO-RS content negotiation (PS3.18 8.7): which media type and transfer syntax to deliver.

Ranges are tried in the client's order of preference (q, then specificity); the first one that
yields a deliverable offer wins. A q=0 range refuses what it covers unless the range that made
the offer is more specific. PS3.18 8.7.3: a DICOM media type without a transfer-syntax parameter
means the default syntax of that media type, unless only lossy compressed data is available.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dicomflow.api.multipart import format_content_type, parse_content_type, split_unquoted

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"
MULTIPART_RELATED = "multipart/related"
JSON_MEDIA_TYPES = ("application/dicom+json", "application/json")

_ELE = EXPLICIT_VR_LITTLE_ENDIAN
_JPEG = "1.2.840.10008.1.2.4."
# PS3.18 Table 8.7.3-5: media types of compressed pixel data, the default transfer syntax first.
_MEDIA_SYNTAXES: dict[str, tuple[str, ...]] = {
    "image/jpeg": (_JPEG + "70", _JPEG + "50", _JPEG + "51", _JPEG + "57"),
    "image/dicom-rle": ("1.2.840.10008.1.2.5",),
    "image/jls": (_JPEG + "80", _JPEG + "81"),
    "image/jp2": (_JPEG + "90", _JPEG + "91"),
    "image/jpx": (_JPEG + "92", _JPEG + "93"),
    "image/jphc": (_JPEG + "201", _JPEG + "202", _JPEG + "203"),
}
FRAME_MEDIA_TYPES: dict[str, str] = {
    uid: media for media, uids in _MEDIA_SYNTAXES.items() for uid in uids
}
_MEDIA_ALIASES = {"image/x-dicom-rle": "image/dicom-rle"}  # the name before PS3.18 2019
# PS3.18 8.7.3: never used with web services.
_NOT_FOR_WEB = frozenset({IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN})
# Stored syntaxes whose frames already are little-endian native pixel bytes.
_NATIVE_FRAMES = frozenset(
    {IMPLICIT_VR_LITTLE_ENDIAN, _ELE, "1.2.840.10008.1.2.1.98", "1.2.840.10008.1.2.1.99"}
)
_UNCOMPRESSED = _NATIVE_FRAMES | {EXPLICIT_VR_BIG_ENDIAN}
_VIDEO = (
    *(f"{n}{fragmentable}" for n in range(100, 107) for fragmentable in ("", ".1")),
    "107",
    "108",
)
# Syntaxes whose pixel data may be lossy: JPEG, JPEG-LS near-lossless, JPEG 2000, HTJ2K,
# JPEG XL, MPEG and HEVC video.
_MAY_BE_LOSSY = frozenset(
    _JPEG + suffix for suffix in ("50", "51", "81", "91", "93", "203", "111", "112", *_VIDEO)
)

Offer = tuple[str, str]  # (media type of each part, transfer syntax UID)
CanTranscode = Callable[[str, str], bool]


class NotAcceptable(Exception):
    """No acceptable media type can be delivered (HTTP 406 with `reason`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MediaRange:
    """One Accept entry: lower-cased type, subtype and parameter names, and its q-value."""

    type: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def media_type(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def specificity(self) -> tuple[int, int, int]:
        """(wildcard level, parameters with concrete values, parameters): larger is narrower."""
        level = 0 if self.type == "*" else 1 if self.subtype == "*" else 2
        concrete = sum(not _is_wildcard(value) for value in self.params.values())
        return level, concrete, len(self.params)


@dataclass(frozen=True)
class Choice:
    """What to deliver: the media type of each part, its transfer syntax, whether to transcode."""

    media_type: str
    transfer_syntax: str
    transcode: bool

    def content_type(self, boundary: str) -> str:
        """The Content-Type of the multipart/related response."""
        return format_content_type(
            MULTIPART_RELATED, {"type": self.media_type, "boundary": boundary}
        )

    def part_content_type(self) -> str:
        """The Content-Type of each part, naming its transfer syntax."""
        return format_content_type(self.media_type, {"transfer-syntax": self.transfer_syntax})


def parse_accept(header: str | None) -> list[MediaRange]:
    """Parse an Accept header, most preferred first; absent or blank means `*/*`.

    Malformed entries are dropped, so a header with none valid accepts nothing.
    """
    if header is None or not header.strip():
        return [MediaRange("*", "*")]
    try:
        items = split_unquoted(header, ",")
    except ValueError:
        return []
    ranges = [r for r in map(_parse_range, filter(None, items)) if r is not None]
    return sorted(ranges, key=lambda r: (-r.q, *(-n for n in r.specificity)))


def accepts_json(accept: str | None) -> bool:
    """True when a DICOM JSON response (metadata, QIDO-RS) is acceptable."""
    ranges = parse_accept(accept)
    refusals = [r for r in ranges if r.q == 0]
    return any(
        _covers(r, media) and not _refused(r, refusals, media)
        for r in ranges
        if r.q > 0
        for media in JSON_MEDIA_TYPES
    )


def choose_instance_media(
    accept: str | None, stored_transfer_syntax: str, can_transcode: CanTranscode
) -> Choice:
    """Media for instances (study, series, instance): multipart/related; type=application/dicom."""
    stored = stored_transfer_syntax
    choice = _select(
        parse_accept(accept),
        lambda r: _instance_offers(r, stored),
        lambda offer: _deliver(offer, stored, stored, can_transcode),
    )
    if choice is None:
        raise NotAcceptable(_refusal("instances", stored, accept))
    return choice


def choose_frame_media(
    accept: str | None, stored_transfer_syntax: str, can_transcode: CanTranscode
) -> Choice:
    """Media for frames and bulk data: octet-stream (uncompressed) or a compressed image type."""
    stored = stored_transfer_syntax
    native = _ELE if stored in _NATIVE_FRAMES else stored
    choice = _select(
        parse_accept(accept),
        lambda r: _frame_offers(r, stored),
        lambda offer: _deliver(offer, stored, native, can_transcode),
    )
    if choice is None:
        raise NotAcceptable(_refusal("frames", stored, accept))
    return choice


# --- selection -------------------------------------------------------------------------------


def _select(
    ranges: list[MediaRange],
    offers: Callable[[MediaRange], Iterable[Offer]],
    deliver: Callable[[Offer], Choice | None],
) -> Choice | None:
    """The first deliverable offer, not refused by a q=0 range, of the most preferred range."""
    refusals = [r for r in ranges if r.q == 0]
    for accepted in (r for r in ranges if r.q > 0):
        for part, syntax in offers(accepted):
            if _refused(accepted, refusals, MULTIPART_RELATED, part, syntax):
                continue
            if choice := deliver((part, syntax)):
                return choice
    return None


def _refused(
    accepted: MediaRange,
    refusals: list[MediaRange],
    media_type: str,
    part: str = "",
    syntax: str = "",
) -> bool:
    """Whether a q=0 range narrower than `accepted` covers the offer."""
    return any(
        r.specificity > accepted.specificity and _covers(r, media_type, part, syntax)
        for r in refusals
    )


def _covers(r: MediaRange, media_type: str, part: str = "", syntax: str = "") -> bool:
    """Whether `r` names `media_type` with parts `part` in `syntax` (an absent parameter: any)."""
    if not _type_matches(r.media_type, media_type):
        return False
    if "*" in (r.type, r.subtype):
        return True
    wanted_part = _part_type(r)
    wanted_syntax = r.params.get("transfer-syntax", "*")
    part_ok = wanted_part is None or _type_matches(wanted_part, part)
    return part_ok and wanted_syntax in ("*", syntax)


def _deliver(offer: Offer, stored: str, native: str, can_transcode: CanTranscode) -> Choice | None:
    """A Choice when `offer` is the stored (or `native`) form, or `can_transcode` produces it."""
    media, syntax = offer
    if syntax in (stored, native):
        return Choice(media, syntax, transcode=syntax != native)
    if can_transcode(stored, syntax):
        return Choice(media, syntax, transcode=True)
    return None


# --- offers per resource ---------------------------------------------------------------------


def _instance_offers(r: MediaRange, stored: str) -> list[Offer]:
    """Instances are application/dicom parts; the client names the syntax, or else the default."""
    web_stored = _ELE if stored in _NOT_FOR_WEB else stored
    if _any_multipart(r):
        return [(DICOM, _ELE), (DICOM, web_stored)]
    if r.media_type != MULTIPART_RELATED or not _type_matches(_part_type(r) or "", DICOM):
        return []
    syntax = r.params.get("transfer-syntax")
    if syntax is None:
        return [(DICOM, _ELE), *([(DICOM, stored)] if stored in _MAY_BE_LOSSY else [])]
    if syntax == "*":
        return [(DICOM, web_stored)]
    return [] if syntax in _NOT_FOR_WEB else [(DICOM, syntax)]


def _frame_offers(r: MediaRange, stored: str) -> list[Offer]:
    """Frames are octet-stream (uncompressed, or raw stored bytes) or compressed image parts."""
    frames = _ELE if stored in _UNCOMPRESSED else stored
    as_stored = (FRAME_MEDIA_TYPES.get(frames, OCTET_STREAM), frames)
    part, syntax = _part_type(r), r.params.get("transfer-syntax")
    if _any_multipart(r) or (part == "*/*" and syntax in (None, "*")):
        return [as_stored, (OCTET_STREAM, _ELE)]
    if r.media_type != MULTIPART_RELATED or part is None or syntax in _UNCOMPRESSED - {_ELE}:
        return []
    if part == "*/*":
        return [(FRAME_MEDIA_TYPES.get(syntax, OCTET_STREAM), syntax)] if syntax else []
    if part == OCTET_STREAM:
        return [(OCTET_STREAM, frames if syntax == "*" else syntax or _ELE)]
    return _image_offers(part, syntax, stored)


def _image_offers(media: str, syntax: str | None, stored: str) -> list[Offer]:
    """Offers for a compressed media type: the stored data first when it is of that type."""
    syntaxes = _MEDIA_SYNTAXES.get(media, ())
    if syntax is None:
        lossy_stored = [stored] if stored in syntaxes and stored in _MAY_BE_LOSSY else []
        return [(media, s) for s in (*lossy_stored, *syntaxes[:1])]
    if syntax == "*":
        return [(media, s) for s in ([stored] if stored in syntaxes else syntaxes)]
    return [(media, syntax)] if syntax in syntaxes else []


# --- helpers ---------------------------------------------------------------------------------


def _parse_range(item: str) -> MediaRange | None:
    """One Accept entry; None when malformed. Parameters after q (accept-ext) are dropped."""
    try:
        media_type, raw = parse_content_type(item)
    except ValueError:
        return None
    kind, subtype = media_type.split("/")
    params: dict[str, str] = {}
    q = 1.0
    for name, value in raw.items():
        if name == "q":
            q = _qvalue(value)
            break
        params[name] = value.lower() if name == "type" else value
    if (kind == "*" and subtype != "*") or not 0 <= q <= 1:
        return None
    return MediaRange(kind, subtype, params, q)


def _qvalue(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return -1.0


def _part_type(r: MediaRange) -> str | None:
    part = r.params.get("type")
    return _MEDIA_ALIASES.get(part, part) if part else None


def _any_multipart(r: MediaRange) -> bool:
    """`*/*`, `multipart/*` or `multipart/related` with no type: any multipart/related payload."""
    if r.media_type == MULTIPART_RELATED:
        return "type" not in r.params
    return r.type == "*" or r.media_type == "multipart/*"


def _type_matches(pattern: str, media_type: str) -> bool:
    kind, _, subtype = pattern.partition("/")
    return (
        pattern == "*/*"
        or media_type == pattern
        or (subtype == "*" and media_type.startswith(f"{kind}/"))
    )


def _is_wildcard(value: str) -> bool:
    return value == "*" or value.endswith("/*")


def _refusal(what: str, stored: str, accept: str | None) -> str:
    return f"cannot deliver {what} stored as {stored} in a media type of Accept: {accept!r}"
