"""Unit tests of WADO-RS content negotiation (PS3.18 8.7)."""

import pytest

from dicomflow.api.negotiation import (
    DICOM,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    FRAME_MEDIA_TYPES,
    IMPLICIT_VR_LITTLE_ENDIAN,
    OCTET_STREAM,
    Choice,
    MediaRange,
    NotAcceptable,
    accepts_json,
    choose_frame_media,
    choose_instance_media,
    parse_accept,
)

ELE = EXPLICIT_VR_LITTLE_ENDIAN
ILE = IMPLICIT_VR_LITTLE_ENDIAN
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
RLE = "1.2.840.10008.1.2.5"
MPEG4 = "1.2.840.10008.1.2.4.102"

# What dicomweb-client 0.61.2 sends.
CLIENT_INSTANCE = 'multipart/related; type="application/dicom"; transfer-syntax=*'
CLIENT_STUDY = 'multipart/related; type="application/dicom"'
CLIENT_FRAMES = 'multipart/related; type="*/*"'


def anything(stored: str, requested: str) -> bool:
    return True


def nothing(stored: str, requested: str) -> bool:
    return False


def dicom(syntax: str) -> str:
    return f'multipart/related; type="application/dicom"; transfer-syntax={syntax}'


def frames(media: str, syntax: str | None = None) -> str:
    suffix = f"; transfer-syntax={syntax}" if syntax else ""
    return f'multipart/related; type="{media}"{suffix}'


class Recorder:
    """A can_transcode that records its calls and allows only the given target syntaxes."""

    def __init__(self, *targets: str) -> None:
        self.targets = targets
        self.calls: list[tuple[str, str]] = []

    def __call__(self, stored: str, requested: str) -> bool:
        self.calls.append((stored, requested))
        return requested in self.targets


# --- parse_accept ----------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   "])
def test_absent_accept_means_anything(header: str | None) -> None:
    assert parse_accept(header) == [MediaRange("*", "*")]


def test_ranges_sorted_by_q_then_specificity() -> None:
    ranges = parse_accept("*/*;q=0.1, text/*, text/html;level=1, text/html;q=0.5, image/png")
    assert [(r.media_type, r.params, r.q) for r in ranges] == [
        ("text/html", {"level": "1"}, 1.0),
        ("image/png", {}, 1.0),
        ("text/*", {}, 1.0),
        ("text/html", {}, 0.5),
        ("*/*", {}, 0.1),
    ]


def test_sort_is_stable_for_equal_ranks() -> None:
    ranges = parse_accept("image/png, image/gif;q=0.5, text/plain, image/jpeg;q=0.5")
    assert [r.media_type for r in ranges] == ["image/png", "text/plain", "image/gif", "image/jpeg"]


def test_concrete_transfer_syntax_is_more_specific_than_wildcard() -> None:
    ranges = parse_accept(f"{dicom('*')}, {dicom(ELE)}")
    assert [r.params["transfer-syntax"] for r in ranges] == [ELE, "*"]


def test_concrete_parameters_outrank_wildcard_ones() -> None:
    ranges = parse_accept(f"{frames('*/*', '*')}, {frames('image/jp2')}")
    assert [r.params["type"] for r in ranges] == ["image/jp2", "*/*"]


def test_names_lower_cased_values_unquoted() -> None:
    (r,) = parse_accept('Multipart/Related; TYPE="Application/DICOM"; Transfer-Syntax=1.2.3')
    assert (r.type, r.subtype) == ("multipart", "related")
    assert r.params == {"type": "application/dicom", "transfer-syntax": "1.2.3"}


def test_quoted_values_may_hold_commas_and_semicolons() -> None:
    ranges = parse_accept('a/b; x="1,2;3", c/d')
    assert [(r.media_type, r.params) for r in ranges] == [("a/b", {"x": "1,2;3"}), ("c/d", {})]


def test_q_zero_kept_and_extensions_after_q_dropped() -> None:
    ranges = parse_accept("a/b;q=0;ext=1, c/d;p=1;q=0.7;ext=2")
    assert [(r.media_type, r.params, r.q) for r in ranges] == [
        ("c/d", {"p": "1"}, 0.7),
        ("a/b", {}, 0.0),
    ]


@pytest.mark.parametrize(
    "entry",
    ["html", "*/json", "a/b;q=2", "a/b;q=-0.1", "a/b;q=x", "a/b;q=nan", "a/b;bad", "a/", "/b"],
)
def test_malformed_entries_dropped(entry: str) -> None:
    assert [r.media_type for r in parse_accept(f"{entry}, c/d")] == ["c/d"]


def test_empty_list_elements_ignored() -> None:
    assert [r.media_type for r in parse_accept(" , a/b,, ")] == ["a/b"]


def test_unterminated_quote_accepts_nothing() -> None:
    assert parse_accept('a/b; x="oops, c/d') == []


def test_specificity_levels() -> None:
    wildcard, any_image, png, png_param = parse_accept("*/*, image/*, image/png, image/png;a=1")[
        ::-1
    ]
    assert wildcard.specificity < any_image.specificity < png.specificity < png_param.specificity


# --- accepts_json ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "application/dicom+json",
        "application/json",
        "application/dicom+json, application/json",  # dicomweb-client search_for_*
        "*/*",
        "application/*",
        "text/html, application/json;q=0.2",
        "application/dicom+json; charset=utf-8",
        "application/json;q=0, application/dicom+json",
    ],
)
def test_json_accepted(header: str | None) -> None:
    assert accepts_json(header) is True


@pytest.mark.parametrize(
    "header",
    [
        "application/dicom+xml",
        'multipart/related; type="application/dicom+xml"',
        "text/*",
        "application/dicom",
        "application/json;q=0",
        "*/*, application/dicom+json;q=0, application/json;q=0",
        "application/*, application/json;q=0, application/dicom+json;q=0",
        "*/*;q=0",
        "garbage",
    ],
)
def test_json_not_accepted(header: str) -> None:
    assert accepts_json(header) is False


# --- choose_instance_media -------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "*/*", "multipart/related", "multipart/*", CLIENT_STUDY])
def test_instances_default_to_explicit_little_endian(header: str | None) -> None:
    assert choose_instance_media(header, ELE, nothing) == Choice(DICOM, ELE, transcode=False)


@pytest.mark.parametrize("header", [None, "*/*", "multipart/related", CLIENT_STUDY])
def test_instances_default_transcodes_compressed_data(header: str | None) -> None:
    can = Recorder(ELE)
    assert choose_instance_media(header, J2K_LOSSLESS, can) == Choice(DICOM, ELE, transcode=True)
    assert can.calls == [(J2K_LOSSLESS, ELE)]


@pytest.mark.parametrize("header", [None, "*/*", "multipart/related"])
def test_any_media_falls_back_to_stored_syntax(header: str | None) -> None:
    choice = choose_instance_media(header, J2K_LOSSLESS, nothing)
    assert choice == Choice(DICOM, J2K_LOSSLESS, transcode=False)


def test_study_request_without_syntax_refuses_untranscodable_lossless_data() -> None:
    with pytest.raises(NotAcceptable, match=J2K_LOSSLESS):
        choose_instance_media(CLIENT_STUDY, J2K_LOSSLESS, nothing)


@pytest.mark.parametrize("stored", [JPEG_BASELINE, J2K, MPEG4])
def test_study_request_without_syntax_may_get_lossy_data_as_stored(stored: str) -> None:
    assert choose_instance_media(CLIENT_STUDY, stored, nothing) == Choice(DICOM, stored, False)


def test_study_request_prefers_decompressed_lossy_data() -> None:
    assert choose_instance_media(CLIENT_STUDY, JPEG_BASELINE, anything) == Choice(DICOM, ELE, True)


@pytest.mark.parametrize("stored", [ELE, J2K_LOSSLESS, JPEG_BASELINE, DEFLATED])
def test_wildcard_syntax_means_stored(stored: str) -> None:
    can = Recorder()
    assert choose_instance_media(CLIENT_INSTANCE, stored, can) == Choice(DICOM, stored, False)
    assert can.calls == []


@pytest.mark.parametrize("stored", [ILE, EXPLICIT_VR_BIG_ENDIAN])
def test_wildcard_syntax_never_delivers_syntaxes_banned_from_the_web(stored: str) -> None:
    can = Recorder(ELE)
    assert choose_instance_media(CLIENT_INSTANCE, stored, can) == Choice(DICOM, ELE, True)
    assert can.calls == [(stored, ELE)]


def test_explicit_syntax_equal_to_stored() -> None:
    can = Recorder()
    assert choose_instance_media(dicom(JLS_LOSSLESS), JLS_LOSSLESS, can) == Choice(
        DICOM, JLS_LOSSLESS, False
    )
    assert can.calls == []


def test_explicit_syntax_transcoded_when_possible() -> None:
    can = Recorder(J2K_LOSSLESS)
    assert choose_instance_media(dicom(J2K_LOSSLESS), ELE, can) == Choice(DICOM, J2K_LOSSLESS, True)
    assert can.calls == [(ELE, J2K_LOSSLESS)]


def test_explicit_syntax_refused_when_not_transcodable() -> None:
    with pytest.raises(NotAcceptable) as raised:
        choose_instance_media(dicom(J2K_LOSSLESS), ELE, nothing)
    assert ELE in raised.value.reason and J2K_LOSSLESS in str(raised.value)


@pytest.mark.parametrize("syntax", [ILE, EXPLICIT_VR_BIG_ENDIAN])
def test_syntaxes_banned_from_the_web_are_refused(syntax: str) -> None:
    with pytest.raises(NotAcceptable):
        choose_instance_media(dicom(syntax), syntax, anything)


@pytest.mark.parametrize(
    "header",
    [
        "application/dicom",
        "application/dicom+json",
        'multipart/related; type="application/octet-stream"',
        'multipart/related; type="image/jp2"',
        "image/*",
        "multipart/mixed",
        "garbage",
    ],
)
def test_instances_refuse_other_media_types(header: str) -> None:
    with pytest.raises(NotAcceptable):
        choose_instance_media(header, ELE, anything)


def test_instances_follow_client_preference() -> None:
    header = f"{dicom(J2K_LOSSLESS)};q=0.5, {dicom(JLS_LOSSLESS)}"
    assert choose_instance_media(header, ELE, anything).transfer_syntax == JLS_LOSSLESS


def test_instances_fall_back_to_less_preferred_range() -> None:
    header = f"{dicom(J2K_LOSSLESS)}, {dicom(JLS_LOSSLESS)};q=0.5, {CLIENT_STUDY};q=0.1"
    can = Recorder(ELE)
    assert choose_instance_media(header, JPEG_LOSSLESS_SV1, can) == Choice(DICOM, ELE, True)
    assert can.calls == [
        (JPEG_LOSSLESS_SV1, J2K_LOSSLESS),
        (JPEG_LOSSLESS_SV1, JLS_LOSSLESS),
        (JPEG_LOSSLESS_SV1, ELE),
    ]


def test_q_zero_refuses_a_syntax_offered_by_a_wildcard() -> None:
    header = f"*/*, {dicom(ELE)};q=0"
    assert choose_instance_media(header, J2K_LOSSLESS, anything) == Choice(
        DICOM, J2K_LOSSLESS, False
    )


def test_q_zero_refuses_the_stored_syntax_of_a_wildcard_syntax() -> None:
    with pytest.raises(NotAcceptable):
        choose_instance_media(
            f"{CLIENT_INSTANCE}, {dicom(JPEG_BASELINE)};q=0", JPEG_BASELINE, anything
        )


def test_q_zero_on_a_broader_range_does_not_override_a_narrower_one() -> None:
    header = f"multipart/related;q=0, {CLIENT_INSTANCE}"
    assert choose_instance_media(header, J2K_LOSSLESS, nothing).transfer_syntax == J2K_LOSSLESS


def test_q_zero_without_syntax_refuses_every_syntax() -> None:
    with pytest.raises(NotAcceptable):
        choose_instance_media(f"*/*, {CLIENT_STUDY};q=0", J2K_LOSSLESS, anything)


@pytest.mark.parametrize("header", ["*/*;q=0", f"{CLIENT_INSTANCE};q=0"])
def test_only_refusals_accept_nothing(header: str) -> None:
    with pytest.raises(NotAcceptable):
        choose_instance_media(header, ELE, anything)


def test_instance_content_types() -> None:
    choice = choose_instance_media(None, ELE, nothing)
    assert choice.content_type("b0undary") == (
        'multipart/related; type="application/dicom"; boundary=b0undary'
    )
    assert choice.part_content_type() == f"application/dicom; transfer-syntax={ELE}"


# --- choose_frame_media ----------------------------------------------------------------------


@pytest.mark.parametrize("stored", [ELE, ILE, DEFLATED, "1.2.840.10008.1.2.1.98"])
@pytest.mark.parametrize("header", [CLIENT_FRAMES, None, "*/*", "multipart/related"])
def test_native_frames_as_octet_stream(header: str | None, stored: str) -> None:
    can = Recorder()
    assert choose_frame_media(header, stored, can) == Choice(OCTET_STREAM, ELE, transcode=False)
    assert can.calls == []


def test_big_endian_frames_need_transcoding() -> None:
    can = Recorder(ELE)
    choice = choose_frame_media(CLIENT_FRAMES, EXPLICIT_VR_BIG_ENDIAN, can)
    assert choice == Choice(OCTET_STREAM, ELE, transcode=True)
    assert can.calls == [(EXPLICIT_VR_BIG_ENDIAN, ELE)]


@pytest.mark.parametrize(
    ("stored", "media"),
    [
        (JPEG_BASELINE, "image/jpeg"),
        ("1.2.840.10008.1.2.4.51", "image/jpeg"),
        ("1.2.840.10008.1.2.4.57", "image/jpeg"),
        (JPEG_LOSSLESS_SV1, "image/jpeg"),
        (JLS_LOSSLESS, "image/jls"),
        ("1.2.840.10008.1.2.4.81", "image/jls"),
        (J2K_LOSSLESS, "image/jp2"),
        (J2K, "image/jp2"),
        ("1.2.840.10008.1.2.4.92", "image/jpx"),
        ("1.2.840.10008.1.2.4.93", "image/jpx"),
        (HTJ2K_LOSSLESS, "image/jphc"),
        ("1.2.840.10008.1.2.4.202", "image/jphc"),
        ("1.2.840.10008.1.2.4.203", "image/jphc"),
        (RLE, "image/dicom-rle"),
    ],
)
def test_compressed_frames_in_their_own_media_type(stored: str, media: str) -> None:
    assert FRAME_MEDIA_TYPES[stored] == media
    for header in (CLIENT_FRAMES, None, "*/*", frames("*/*", "*"), frames(media, "*")):
        assert choose_frame_media(header, stored, nothing) == Choice(media, stored, False)


def test_compressed_frames_without_media_type_are_octet_stream() -> None:
    assert choose_frame_media(CLIENT_FRAMES, MPEG4, nothing) == Choice(OCTET_STREAM, MPEG4, False)


def test_octet_stream_without_syntax_means_uncompressed() -> None:
    can = Recorder(ELE)
    choice = choose_frame_media(frames(OCTET_STREAM), J2K_LOSSLESS, can)
    assert choice == Choice(OCTET_STREAM, ELE, transcode=True)
    assert can.calls == [(J2K_LOSSLESS, ELE)]


def test_octet_stream_without_syntax_refused_when_not_decompressible() -> None:
    with pytest.raises(NotAcceptable, match="frames"):
        choose_frame_media(frames(OCTET_STREAM), J2K_LOSSLESS, nothing)


@pytest.mark.parametrize(("stored", "delivered"), [(J2K_LOSSLESS, J2K_LOSSLESS), (ILE, ELE)])
def test_octet_stream_with_any_syntax_delivers_stored_bytes(stored: str, delivered: str) -> None:
    choice = choose_frame_media(frames(OCTET_STREAM, "*"), stored, nothing)
    assert choice == Choice(OCTET_STREAM, delivered, transcode=False)
    assert choice.part_content_type() == f"application/octet-stream; transfer-syntax={delivered}"


def test_image_type_without_syntax_means_its_default() -> None:
    can = Recorder(JPEG_LOSSLESS_SV1)
    choice = choose_frame_media(frames("image/jpeg"), ELE, can)
    assert choice == Choice("image/jpeg", JPEG_LOSSLESS_SV1, transcode=True)
    assert can.calls == [(ELE, JPEG_LOSSLESS_SV1)]


def test_image_type_without_syntax_gets_lossy_data_as_stored() -> None:
    can = Recorder()
    assert choose_frame_media(frames("image/jpeg"), JPEG_BASELINE, can) == Choice(
        "image/jpeg", JPEG_BASELINE, False
    )
    assert can.calls == []


def test_image_type_without_syntax_refuses_other_lossless_syntax() -> None:
    with pytest.raises(NotAcceptable):
        choose_frame_media(frames("image/jpeg"), "1.2.840.10008.1.2.4.57", nothing)


def test_image_type_with_any_syntax_transcodes_to_its_default() -> None:
    assert choose_frame_media(frames("image/jp2", "*"), ELE, Recorder(J2K_LOSSLESS)) == Choice(
        "image/jp2", J2K_LOSSLESS, True
    )


def test_image_type_with_any_syntax_keeps_stored_syntax_of_that_type() -> None:
    can = Recorder(J2K_LOSSLESS)
    assert choose_frame_media(frames("image/jp2", "*"), J2K, can) == Choice("image/jp2", J2K, False)
    assert can.calls == []


def test_image_type_with_explicit_syntax() -> None:
    assert choose_frame_media(frames("image/jp2", J2K), J2K_LOSSLESS, anything) == Choice(
        "image/jp2", J2K, True
    )


@pytest.mark.parametrize(
    "header",
    [
        frames("image/jp2", JLS_LOSSLESS),  # syntax of another media type
        frames("image/png"),  # no such pixel data media type
        frames("*/*", ILE),
        frames(OCTET_STREAM, DEFLATED),
        "image/jp2",  # frames are always multipart
        "application/octet-stream",
        "multipart/mixed",
        CLIENT_STUDY,
    ],
)
def test_frames_refuse(header: str) -> None:
    with pytest.raises(NotAcceptable):
        choose_frame_media(header, J2K_LOSSLESS, anything)


def test_legacy_rle_media_type_accepted() -> None:
    assert choose_frame_media(frames("image/x-dicom-rle"), RLE, nothing) == Choice(
        "image/dicom-rle", RLE, False
    )


def test_any_type_with_explicit_syntax() -> None:
    assert choose_frame_media(frames("*/*", JLS_LOSSLESS), ELE, anything) == Choice(
        "image/jls", JLS_LOSSLESS, True
    )
    assert choose_frame_media(frames("*/*", ELE), J2K_LOSSLESS, anything) == Choice(
        OCTET_STREAM, ELE, True
    )


def test_frames_follow_client_preference() -> None:
    header = f"{frames('image/jp2')};q=0.9, {frames(OCTET_STREAM)}"
    assert choose_frame_media(header, J2K_LOSSLESS, anything).media_type == OCTET_STREAM
    assert choose_frame_media(header, J2K_LOSSLESS, nothing).media_type == "image/jp2"


def test_frames_wildcard_falls_back_to_uncompressed() -> None:
    header = f"*/*, {frames('image/jphc')};q=0"
    assert choose_frame_media(header, HTJ2K_LOSSLESS, anything) == Choice(OCTET_STREAM, ELE, True)


def test_frame_content_types() -> None:
    choice = choose_frame_media(CLIENT_FRAMES, J2K_LOSSLESS, nothing)
    assert choice.content_type("xyz") == 'multipart/related; type="image/jp2"; boundary=xyz'
    assert choice.part_content_type() == f"image/jp2; transfer-syntax={J2K_LOSSLESS}"
