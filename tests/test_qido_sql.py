"""Unit tests of QIDO-RS parameter parsing and SQL generation (no database)."""

import datetime as dt

import pytest

from dicomflow.api.qido_sql import (
    Level,
    QidoQuery,
    QueryError,
    build_select,
    fuzzy_name_regexes,
    like_pattern,
    parse_query,
    person_name_regex,
)

STUDY, SERIES, INSTANCE = "1.2.3", "1.2.3.4", "1.2.3.4.5"


def parse(level: Level, *pairs: tuple[str, str], **kwargs: str) -> QidoQuery:
    return parse_query(list(pairs), level, default_limit=100, max_limit=1000, **kwargs)


def sql_of(level: Level, *pairs: tuple[str, str], **kwargs: str) -> tuple[str, list[object]]:
    return build_select(parse(level, *pairs, **kwargs), "tenant-a")


def page_where(sql: str) -> str:
    """The WHERE clause of the page CTE."""
    return sql.split(" WHERE ", 1)[1].split(" ORDER BY ", 1)[0]


def keywords(query: QidoQuery) -> set[str]:
    return {a.keyword for a in query.attributes}


# --- parameters ------------------------------------------------------------------------------


def test_keyword_and_tag_name_the_same_attribute() -> None:
    by_keyword = parse(Level.STUDY, ("PatientID", "P1"))
    by_tag = parse(Level.STUDY, ("00100020", "P1"))
    assert by_keyword.matches == by_tag.matches
    assert by_keyword.matches[0].attribute.keyword == "PatientID"


@pytest.mark.parametrize(
    ("pairs", "reason"),
    [
        ([("PatientNmae", "X")], "unknown query parameter or attribute 'PatientNmae'"),
        ([("0010002X", "X")], "unknown"),
        ([("00101002.00100020", "X")], "sequence matching"),
        ([("Modality", "CT")], "Modality is a series attribute"),
        ([("NumberOfStudyRelatedInstances", "3")], "matching on NumberOfStudyRelatedInstances"),
        ([("PerformedProcedureStepStartDate", "20240101")], "is not supported"),
        ([("limit", "0")], "limit must be an integer"),
        ([("limit", "ten")], "limit must be an integer"),
        ([("limit", "5"), ("limit", "6")], "given more than once"),
        ([("offset", "-1")], "offset must be an integer"),
        ([("fuzzymatching", "yes")], "fuzzymatching must be true or false"),
        ([("emptyvaluematching", "true")], "not supported"),
        ([("StudyInstanceUID", "1.02.3")], "not a UID"),
        ([("StudyDate", "2024-01-02")], "not a date"),
        ([("StudyDate", "20240230")], "not a date"),
        ([("StudyDate", "-")], "not a range"),
        ([("StudyTime", "2500"), ("PatientID", "P")], "not a time"),
        ([("StudyTime", "1200.5"), ("PatientID", "P")], "not a time"),
        ([("includefield", "NoSuchKeyword")], "unknown"),
    ],
)
def test_invalid_parameters_are_rejected_with_a_reason(
    pairs: list[tuple[str, str]], reason: str
) -> None:
    with pytest.raises(QueryError, match=reason.replace("(", r"\(").replace(".", r"\.")):
        parse(Level.STUDY, *pairs)


def test_keys_without_index_need_an_indexed_key_or_a_study() -> None:
    with pytest.raises(QueryError, match="StudyTime can only be matched within a study"):
        parse(Level.STUDY, ("StudyTime", "1000-1200"))
    with pytest.raises(QueryError, match="InstanceNumber"):
        parse(Level.INSTANCE, ("InstanceNumber", "1"))
    assert parse(Level.STUDY, ("StudyTime", "1000-"), ("PatientID", "P1")).matches
    assert parse(Level.INSTANCE, ("InstanceNumber", "1"), study_uid=STUDY).matches


def test_empty_value_and_star_are_universal_but_returned() -> None:
    query = parse(Level.STUDY, ("StudyDescription", ""), ("AccessionNumber", "*"))
    assert query.matches == ()
    assert {"StudyDescription", "AccessionNumber"} <= keywords(query)


def test_study_defaults_follow_ps3_18_table_10_6_3_3() -> None:
    assert keywords(parse(Level.STUDY)) == {
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "InstanceAvailability",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "RetrieveURL",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    }


def test_all_series_and_all_instances_also_return_upper_levels() -> None:
    in_study = keywords(parse(Level.SERIES, study_uid=STUDY))
    assert "NumberOfSeriesRelatedInstances" in in_study
    assert "PatientName" not in in_study
    assert {"PatientName", "ModalitiesInStudy"} <= keywords(parse(Level.SERIES))
    assert {"PatientName", "Modality"} <= keywords(parse(Level.INSTANCE))
    study_instances = keywords(parse(Level.INSTANCE, study_uid=STUDY))
    assert "Modality" in study_instances
    assert "PatientName" not in study_instances
    assert "Modality" not in keywords(parse(Level.INSTANCE, study_uid=STUDY, series_uid=SERIES))


def test_includefield_repeated_comma_separated_tags_and_all() -> None:
    query = parse(
        Level.STUDY,
        ("includefield", "StudyDescription,00101010"),
        ("includefield", "TimezoneOffsetFromUTC"),  # known, not held: ignored
        ("includefield", "SeriesDescription"),  # a series attribute: never returned for studies
    )
    returned = keywords(query)
    assert {"StudyDescription", "PatientAge"} <= returned
    assert not {"TimezoneOffsetFromUTC", "SeriesDescription"} & returned
    series_all = keywords(parse(Level.SERIES, ("includefield", "all"), study_uid=STUDY))
    assert {"SeriesDate", "BodyPartExamined", "Manufacturer"} <= series_all
    assert "SOPClassUID" not in series_all


def test_limit_defaults_is_capped_and_says_when_the_server_chose_it() -> None:
    assert (parse(Level.STUDY).limit, parse(Level.STUDY).limited_by_server) == (100, True)
    explicit = parse(Level.STUDY, ("limit", "7"), ("offset", "14"))
    assert (explicit.limit, explicit.offset, explicit.limited_by_server) == (7, 14, False)
    capped = parse(Level.STUDY, ("limit", "5000"))
    assert (capped.limit, capped.limited_by_server) == (1000, True)


# --- SQL -------------------------------------------------------------------------------------


def test_every_query_is_scoped_to_the_tenant_and_bounded_by_the_limit() -> None:
    sql, args = sql_of(Level.STUDY, ("limit", "10"), ("offset", "20"))
    assert args[0] == "tenant-a"
    assert page_where(sql).startswith("s.tenant_id = $1 AND ")
    assert sql.count("LIMIT") == 1
    assert "LIMIT $2 OFFSET $3)" in sql
    assert args[1:] == [11, 20]  # one more row than asked tells whether more exist


def test_values_are_arguments_never_sql_text() -> None:
    sql, args = sql_of(Level.STUDY, ("PatientID", "x' OR '1'='1"))
    assert "OR '1'" not in sql
    assert "s.patient_id = $2" in page_where(sql)
    assert args[1] == "x' OR '1'='1"


def test_path_uids_scope_series_and_instances() -> None:
    sql, args = sql_of(Level.INSTANCE, study_uid=STUDY, series_uid=SERIES)
    assert page_where(sql) == "i.tenant_id = $1 AND i.study_uid = $2 AND i.series_uid = $3"
    assert args[:3] == ["tenant-a", STUDY, SERIES]


@pytest.mark.parametrize(
    ("pairs", "condition", "value"),
    [
        ([("StudyInstanceUID", STUDY)], "s.study_uid = $2", STUDY),
        ([("StudyInstanceUID", f"{STUDY}\\{SERIES}")], "s.study_uid = ANY($2)", [STUDY, SERIES]),
        ([("StudyInstanceUID", f"{STUDY},{SERIES}")], "s.study_uid = ANY($2)", [STUDY, SERIES]),
        (
            [("StudyInstanceUID", STUDY), ("StudyInstanceUID", SERIES)],
            "s.study_uid = ANY($2)",
            [STUDY, SERIES],
        ),
        ([("AccessionNumber", "A1")], "s.accession_number = $2", "A1"),
        ([("PatientID", "P1*")], "s.patient_id LIKE $2", "P1%"),
        ([("PatientID", "P?1")], "s.patient_id LIKE $2", "P_1"),
        ([("ModalitiesInStudy", "CT\\MR")], "m.modality = ANY($2)", ["CT", "MR"]),
        ([("StudyDate", "20240102")], "s.study_date = $2", dt.date(2024, 1, 2)),
    ],
)
def test_study_matching(pairs: list[tuple[str, str]], condition: str, value: object) -> None:
    sql, args = sql_of(Level.STUDY, *pairs)
    assert condition in page_where(sql)
    assert args[1] == value


def test_exact_values_and_patterns_of_one_key_are_alternatives() -> None:
    sql, args = sql_of(Level.STUDY, ("PatientID", "P1\\Q*"))
    assert "(s.patient_id = $2 OR s.patient_id LIKE $3)" in sql
    assert args[1:3] == ["P1", "Q%"]


def test_like_escapes_its_own_special_characters() -> None:
    assert like_pattern("50%_a\\b*?") == "50\\%\\_a\\\\b%_"


def test_date_ranges_open_and_closed() -> None:
    sql, args = sql_of(Level.STUDY, ("StudyDate", "20240101-20240131"))
    assert "(s.study_date >= $2 AND s.study_date <= $3)" in sql
    assert args[1:3] == [dt.date(2024, 1, 1), dt.date(2024, 1, 31)]
    sql, args = sql_of(Level.STUDY, ("StudyDate", "20240101-"))
    assert "s.study_date >= $2 AND" in sql
    assert "s.study_date <= " not in page_where(sql)
    sql, args = sql_of(Level.STUDY, ("StudyDate", "-20240101"))
    assert "s.study_date <= $2" in sql
    assert args[1] == dt.date(2024, 1, 1)


def test_time_values_cover_their_precision() -> None:
    sql, args = sql_of(Level.STUDY, ("StudyTime", "10"), ("PatientID", "P"))
    assert "split_part(replace(s.study_time, ':', ''), '.', 1)" in sql
    assert "100000.000000" in args
    assert "105959.999999" in args
    _, args = sql_of(Level.STUDY, ("StudyTime", "0930-120000.5"), ("PatientID", "P"))
    assert args[1:3] == ["093000.000000", "120000.599999"]


def test_study_date_and_time_combine_into_one_date_time_range() -> None:
    sql, args = sql_of(Level.STUDY, ("StudyDate", "20240101-20240103"), ("StudyTime", "1800-0600"))
    where = page_where(sql)
    assert "(s.study_date >= $2 AND s.study_date <= $3)" in where
    assert "to_char(s.study_date, 'YYYYMMDD') ||" in where
    assert args[1:5] == [
        dt.date(2024, 1, 1),
        dt.date(2024, 1, 3),
        "20240101180000.000000",
        "20240103060059.999999",
    ]


def test_person_name_matches_any_component_group_case_insensitively() -> None:
    sql, args = sql_of(Level.STUDY, ("PatientName", "Yam*"))
    assert "s.patient_name ~* $2" in sql
    assert args[1] == person_name_regex("Yam*") == r"(^|=)Yam[^=]*\^*(=|$)"
    assert person_name_regex("山田^太郎") == r"(^|=)山田\^太郎\^*(=|$)"
    assert person_name_regex("O'Neil?") == r"(^|=)O\'Neil[^=]\^*(=|$)"


def test_person_name_with_groups_matches_group_by_group() -> None:
    assert person_name_regex("Yamada^Tarou=山田*") == (r"^Yamada\^Tarou\^*=山田[^=]*\^*(=.*)?$")
    assert person_name_regex("=山田^太郎") == r"^[^=]*=山田\^太郎\^*(=.*)?$"


def test_fuzzy_matching_needs_every_word_to_begin_a_component() -> None:
    assert fuzzy_name_regexes("yam tar*") == [r"(^|[=^ ])yam", r"(^|[=^ ])tar[^=]*"]
    sql, args = sql_of(Level.STUDY, ("PatientName", "yam^tar"), ("fuzzymatching", "true"))
    assert "(s.patient_name ~* $2 AND s.patient_name ~* $3)" in sql
    assert args[1:3] == [r"(^|[=^ ])yam", r"(^|[=^ ])tar"]


def test_studies_are_listed_once_newest_first_with_counts() -> None:
    sql, _ = sql_of(Level.STUDY)
    assert "SELECT DISTINCT ON (s.study_date, s.study_uid)" in sql
    assert "ORDER BY s.study_date DESC NULLS LAST, s.study_uid, s.updated_time DESC" in sql
    assert "max(d.study_date)" in page_where(sql)
    assert 'study_stats.modalities AS "ModalitiesInStudy"' in sql
    assert "count(*) AS instances FROM dicom_image_meta" in sql
    assert sql.endswith("ORDER BY page.study_date DESC NULLS LAST, page.study_uid")


def test_series_match_study_attributes_on_their_own_row() -> None:
    sql, _ = sql_of(Level.SERIES, ("PatientID", "P1"), ("Modality", "CT"))
    assert "s.patient_id = $2 AND s.modality = $3" in page_where(sql)
    assert 'series_stats.instances AS "NumberOfSeriesRelatedInstances"' in sql
    in_study, _ = sql_of(Level.SERIES, study_uid=STUDY)
    assert in_study.endswith("ORDER BY page.series_number NULLS LAST, page.series_uid")


@pytest.mark.parametrize("level", [Level.STUDY, Level.SERIES])
def test_modalities_in_study_looks_at_every_series_of_the_study(level: Level) -> None:
    sql, _ = sql_of(level, ("ModalitiesInStudy", "MR"))
    assert "EXISTS (SELECT 1 FROM dicom_state_meta m WHERE m.tenant_id = $1" in sql
    assert "m.study_uid = s.study_uid AND m.modality = $2)" in sql


def test_instances_join_the_series_row_only_when_needed() -> None:
    alone, _ = sql_of(Level.INSTANCE, study_uid=STUDY, series_uid=SERIES)
    assert "JOIN" not in alone
    sql, args = sql_of(Level.INSTANCE, ("PatientID", "P1"), ("InstanceNumber", "2"))
    assert "LEFT JOIN dicom_state_meta s ON s.tenant_id = i.tenant_id" in sql
    assert "s.patient_id = $2 AND i.instance_number = $3" in page_where(sql)
    assert args[2] == 2
    assert "ORDER BY i.study_uid, i.series_uid, i.instance_number NULLS LAST, i.sop_uid" in sql


def test_returned_columns_are_named_by_keyword() -> None:
    sql, _ = sql_of(Level.INSTANCE, ("includefield", "all"), study_uid=STUDY, series_uid=SERIES)
    for keyword in ("SOPClassUID", "InstanceNumber", "Rows", "ContentDate", "ImageType"):
        assert f'page."{keyword}"' in sql
    assert "to_char(i.content_date, 'YYYYMMDD') AS \"ContentDate\"" in sql
