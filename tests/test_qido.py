"""QIDO-RS end to end: storescu -> SCP -> Kafka -> Faust -> PostgreSQL -> dicomweb-client.

The database is shared with other tests and kept between runs: every assertion is limited to
this test's own UIDs and patient IDs.
"""

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from fastapi import FastAPI
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from dicomflow.api.qido_sql import Level, build_select, parse_query
from dicomflow.api.routes import qido
from dicomflow.core.settings import Settings
from tests.dicom_factory import make_ct
from tests.services import RunningServices, storescu, wait_for

pytestmark = pytest.mark.e2e

JAPANESE = "Yamada^Tarou=山田^太郎=やまだ^たろう"
Result = dict[str, Any]


def write_ct(path: Path, extra: dict[str, Any] | None = None, **kwargs: Any) -> Path:
    """A synthetic CT from `make_ct`, with `extra` attributes set on top."""
    ds = make_ct(path, **kwargs)
    if extra:
        for keyword, value in extra.items():
            setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=True)
    return path


def send(system: RunningServices, files: list[Path], called_ae: str = "DICOMFLOW") -> None:
    result = storescu(system.scp_port, files, called_ae)
    assert result.returncode == 0, result.stderr


def tag(keyword: str) -> str:
    return f"{tag_for_keyword(keyword):08X}"


def retrieve_path(result: Result) -> str:
    """The path of RetrieveURL: dicomweb-client 0.61.2 sends `Host` without the port, and the
    server builds URLs from `Host`, so only the path is compared for its requests."""
    (url,) = values(result, "RetrieveURL")
    return urlsplit(url).path


def values(result: Result, keyword: str) -> list[Any]:
    """The values of `keyword` in a DICOM JSON result ([] when absent or empty)."""
    return result.get(tag(keyword), {}).get("Value", [])


def indexed(search: Callable[[], list[Result]], what: str, **totals: int) -> list[Result]:
    """Poll `search` until, for each keyword of `totals`, its values over the results add up."""

    def ready() -> list[Result] | None:
        results = search()
        sums = {k: sum(sum(values(r, k)) for r in results) for k in totals}
        return results if sums == totals else None

    return wait_for(ready, 30, 0.2, what)


@pytest.fixture
def client(system: RunningServices) -> DICOMwebClient:
    return DICOMwebClient(url=f"{system.api_url}/dicom-web")


@pytest.fixture
def patient_id(uid_root: str) -> str:
    return f"QIDO-{uid_root[-20:]}"


def store_study(
    system: RunningServices,
    tmp_path: Path,
    study_uid: str,
    patient_id: str,
    series: list[tuple[str, int]],
    called_ae: str = "DICOMFLOW",
    extra: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Send a study whose series are `(modality, instance count)`; numbered from 1."""
    files = []
    for number, (modality, count) in enumerate(series, start=1):
        for instance in range(count, 0, -1):  # sent in reverse: results are still ordered
            files.append(
                write_ct(
                    tmp_path / f"{study_uid}-{number}-{instance}.dcm",
                    extra={"SeriesNumber": number, **(extra or {})},
                    study_uid=study_uid,
                    series_uid=f"{study_uid}.{number}",
                    sop_uid=f"{study_uid}.{number}.{instance}",
                    instance_number=instance,
                    patient_id=patient_id,
                    modality=modality,
                    **kwargs,
                )
            )
    send(system, files, called_ae)


def test_studies_by_patient_id_return_the_required_attributes(
    system: RunningServices, client: DICOMwebClient, tmp_path: Path, uid_root: str, patient_id: str
) -> None:
    study = f"{uid_root}.1"
    store_study(
        system,
        tmp_path,
        study,
        patient_id,
        [("CT", 2), ("MR", 1)],
        patient_name=JAPANESE,
        extra={"AccessionNumber": "ACC-QIDO"},
    )
    (result,) = indexed(
        lambda: client.search_for_studies(search_filters={"PatientID": patient_id}),
        "the study",
        NumberOfStudyRelatedInstances=3,
        NumberOfStudyRelatedSeries=2,
    )

    assert values(result, "ModalitiesInStudy") == ["CT", "MR"]
    assert values(result, "NumberOfStudyRelatedSeries") == [2]
    assert values(result, "StudyInstanceUID") == [study]
    assert values(result, "StudyDate") == ["20240102"]
    assert values(result, "StudyTime") == ["101010"]
    assert values(result, "AccessionNumber") == ["ACC-QIDO"]
    assert values(result, "PatientBirthDate") == ["19700101"]
    assert values(result, "InstanceAvailability") == ["ONLINE"]
    assert values(result, "SpecificCharacterSet") == ["ISO_IR 192"]
    assert values(result, "PatientName") == [
        {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    ]
    assert retrieve_path(result) == f"/dicom-web/studies/{study}"
    assert result[tag("ReferringPhysicianName")] == {"vr": "PN"}  # returned, empty


def test_patient_name_wildcard_non_ascii_case_and_fuzzy_matching(
    system: RunningServices, client: DICOMwebClient, tmp_path: Path, uid_root: str, patient_id: str
) -> None:
    study = f"{uid_root}.1"
    store_study(system, tmp_path, study, patient_id, [("CT", 1)], patient_name=JAPANESE)
    indexed(
        lambda: client.search_for_studies(search_filters={"PatientID": patient_id}),
        "the study",
        NumberOfStudyRelatedInstances=1,
    )

    def found(name: str, fuzzy: bool | None = None) -> list[str]:
        results = client.search_for_studies(
            search_filters={"PatientID": patient_id, "PatientName": name}, fuzzymatching=fuzzy
        )
        return [values(r, "StudyInstanceUID")[0] for r in results]

    assert found("Yam*") == [study]
    assert found("山田^太郎") == [study]
    assert found("やまだ*") == [study]
    assert found("yamada^tarou") == [study]
    assert found("Yamada^Tarou=山田^*") == [study]
    assert found("Yamada") == []
    assert found("Yamada^Jirou") == []
    assert found("Yamada^Tarou=山田^次郎") == []
    assert found("tar") == []
    assert found("tar", fuzzy=True) == [study]
    assert found("tarou yam", fuzzy=True) == [study]
    assert found("rou", fuzzy=True) == []


def test_study_date_ranges_accession_number_and_modalities(
    system: RunningServices, client: DICOMwebClient, tmp_path: Path, uid_root: str, patient_id: str
) -> None:
    older, newer = f"{uid_root}.1", f"{uid_root}.2"
    store_study(
        system,
        tmp_path,
        older,
        patient_id,
        [("CT", 1)],
        study_date="20230105",
        extra={"AccessionNumber": "ACC-OLD"},
    )
    store_study(
        system,
        tmp_path,
        newer,
        patient_id,
        [("MR", 1), ("CT", 1)],
        study_date="20240610",
        extra={"AccessionNumber": "ACC-NEW"},
    )
    indexed(
        lambda: client.search_for_studies(search_filters={"PatientID": patient_id}),
        "both studies",
        NumberOfStudyRelatedInstances=3,
        NumberOfStudyRelatedSeries=3,
    )

    def found(**filters: str) -> list[str]:
        results = client.search_for_studies(search_filters={"PatientID": patient_id, **filters})
        return [values(r, "StudyInstanceUID")[0] for r in results]

    assert found() == [newer, older]  # newest study first
    assert found(StudyDate="20240101-20241231") == [newer]
    assert found(StudyDate="-20231231") == [older]
    assert found(StudyDate="20230105") == [older]
    assert found(StudyDate="20230106-") == [newer]
    assert found(StudyDate="20240610", StudyTime="1000-1100") == [newer]
    assert found(StudyDate="20240610", StudyTime="1100-") == []
    assert found(AccessionNumber="ACC-OLD") == [older]
    assert found(AccessionNumber="ACC-*") == [newer, older]
    assert found(ModalitiesInStudy="MR") == [newer]
    assert found(ModalitiesInStudy="CT") == [newer, older]
    (result,) = client.search_for_studies(
        search_filters={"PatientID": patient_id, "ModalitiesInStudy": "MR"}
    )
    assert values(result, "ModalitiesInStudy") == ["CT", "MR"]  # every series of the study


def test_a_study_whose_series_disagree_on_its_date_is_listed_once(
    system: RunningServices, client: DICOMwebClient, tmp_path: Path, uid_root: str, patient_id: str
) -> None:
    study = f"{uid_root}.1"
    files = [
        write_ct(
            tmp_path / f"{number}.dcm",
            study_uid=study,
            series_uid=f"{study}.{number}",
            patient_id=patient_id,
            study_date=date,
            modality=modality,
        )
        for number, date, modality in ((1, "20240301", "CT"), (2, "20240105", "MR"))
    ]
    send(system, files)
    indexed(
        lambda: client.search_for_studies(search_filters={"PatientID": patient_id}),
        "the study",
        NumberOfStudyRelatedInstances=2,
        NumberOfStudyRelatedSeries=2,
    )
    for filters in ({}, {"ModalitiesInStudy": "MR"}, {"StudyDate": "20240301"}):
        (result,) = client.search_for_studies(search_filters={"PatientID": patient_id, **filters})
        assert values(result, "StudyDate") == ["20240301"]
    assert (
        client.search_for_studies(search_filters={"PatientID": patient_id, "StudyDate": "20240105"})
        == []
    )


def test_series_and_instances_of_a_study(
    system: RunningServices, client: DICOMwebClient, tmp_path: Path, uid_root: str, patient_id: str
) -> None:
    study = f"{uid_root}.1"
    ct, mr = f"{study}.1", f"{study}.2"
    store_study(system, tmp_path, study, patient_id, [("CT", 3), ("MR", 1)])
    series = indexed(
        lambda: client.search_for_series(study_instance_uid=study),
        "both series",
        NumberOfSeriesRelatedInstances=4,
    )
    assert [values(s, "SeriesInstanceUID") for s in series] == [[ct], [mr]]
    assert [values(s, "SeriesNumber") for s in series] == [[1], [2]]
    assert [values(s, "NumberOfSeriesRelatedInstances") for s in series] == [[3], [1]]
    assert retrieve_path(series[0]) == f"/dicom-web/studies/{study}/series/{ct}"
    assert "PatientID" not in Dataset.from_json(series[0])  # series of one study

    (mr_series,) = client.search_for_series(
        search_filters={"PatientID": patient_id, "Modality": "MR"}
    )
    assert values(mr_series, "SeriesInstanceUID") == [mr]
    assert values(mr_series, "PatientID") == [patient_id]  # all series: study attributes too
    assert values(mr_series, "NumberOfStudyRelatedInstances") == [4]

    instances = client.search_for_instances(study_instance_uid=study, series_instance_uid=ct)
    assert [values(i, "InstanceNumber") for i in instances] == [[1], [2], [3]]
    assert [values(i, "SOPInstanceUID") for i in instances] == [[f"{ct}.{n}"] for n in (1, 2, 3)]
    first = instances[0]
    assert values(first, "Rows") == [64]
    assert values(first, "NumberOfFrames") == [1]
    assert values(first, "SOPClassUID") == ["1.2.840.10008.5.1.4.1.1.2"]
    assert retrieve_path(first) == f"/dicom-web/studies/{study}/series/{ct}/instances/{ct}.1"
    in_study = client.search_for_instances(study_instance_uid=study)
    assert len(in_study) == 4
    assert values(in_study[-1], "Modality") == ["MR"]  # a study's instances: series attributes

    (by_uid,) = client.search_for_instances(search_filters={"SOPInstanceUID": f"{mr}.1"})
    assert values(by_uid, "StudyInstanceUID") == [study]
    assert values(by_uid, "PatientID") == [patient_id]
    (by_patient,) = client.search_for_instances(
        search_filters={"PatientID": patient_id, "Modality": "MR"}
    )
    assert values(by_patient, "SOPInstanceUID") == [f"{mr}.1"]


def test_includefield_names_tags_and_all(
    system: RunningServices, client: DICOMwebClient, tmp_path: Path, uid_root: str, patient_id: str
) -> None:
    study = f"{uid_root}.1"
    store_study(system, tmp_path, study, patient_id, [("CT", 1)])
    indexed(
        lambda: client.search_for_studies(search_filters={"PatientID": patient_id}),
        "the study",
        NumberOfStudyRelatedInstances=1,
    )
    filters = {"PatientID": patient_id}

    (plain,) = client.search_for_studies(search_filters=filters)
    assert tag("StudyDescription") not in plain
    (named,) = client.search_for_studies(search_filters=filters, fields=["StudyDescription"])
    assert values(named, "StudyDescription") == ["Test study"]
    (tagged,) = client.search_for_studies(search_filters=filters, fields=["00081030", "00101010"])
    assert values(tagged, "StudyDescription") == ["Test study"]
    assert tagged[tag("PatientAge")] == {"vr": "AS"}
    (everything,) = client.search_for_studies(search_filters=filters, fields=["all"])
    assert values(everything, "StudyDescription") == ["Test study"]

    (series,) = client.search_for_series(study_instance_uid=study, fields=["all"])
    assert values(series, "SeriesDescription") == ["Test series"]
    assert tag("BodyPartExamined") in series
    (instance,) = client.search_for_instances(
        study_instance_uid=study, series_instance_uid=f"{study}.1", fields=["all"]
    )
    assert values(instance, "ImageType") == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert values(instance, "PhotometricInterpretation") == ["MONOCHROME2"]
    assert values(instance, "BitsStored") == [12]


def test_limit_and_offset_page_through_a_stable_order(
    system: RunningServices, client: DICOMwebClient, tmp_path: Path, uid_root: str, patient_id: str
) -> None:
    studies = [f"{uid_root}.{n}" for n in range(1, 6)]
    for day, study in enumerate(studies, start=1):
        store_study(system, tmp_path, study, patient_id, [("CT", 1)], study_date=f"202401{day:02d}")
    filters = {"PatientID": patient_id}
    everything = indexed(
        lambda: client.search_for_studies(search_filters=filters),
        "five studies",
        NumberOfStudyRelatedInstances=5,
    )
    newest_first = list(reversed(studies))
    assert [values(r, "StudyInstanceUID")[0] for r in everything] == newest_first

    pages = [
        client.search_for_studies(search_filters=filters, limit=2, offset=offset)
        for offset in (0, 2, 4, 6)
    ]
    assert [len(page) for page in pages] == [2, 2, 1, 0]
    paged = [values(r, "StudyInstanceUID")[0] for page in pages for r in page]
    assert paged == newest_first
    remaining = client.search_for_studies(search_filters=filters, limit=2, get_remaining=True)
    assert [values(r, "StudyInstanceUID")[0] for r in remaining] == newest_first


def test_tenants_never_see_each_other(
    system: RunningServices, client: DICOMwebClient, tmp_path: Path, uid_root: str, patient_id: str
) -> None:
    default_study, b_study = f"{uid_root}.1", f"{uid_root}.2"
    default_patient, b_patient = f"{patient_id}-A", f"{patient_id}-B"
    store_study(system, tmp_path, default_study, default_patient, [("CT", 1)])
    store_study(system, tmp_path, b_study, b_patient, [("CT", 1)], called_ae="TENANT_B")
    tenant_url = f"{system.api_url}/tenants/tenant-b/dicom-web"
    by_path = DICOMwebClient(url=tenant_url)
    by_header = DICOMwebClient(url=f"{system.api_url}/dicom-web", headers={"X-Tenant": "tenant-b"})
    for tenant_client, patient in ((client, default_patient), (by_path, b_patient)):
        indexed(
            lambda c=tenant_client, p=patient: c.search_for_studies(
                search_filters={"PatientID": p}
            ),
            f"the study of {patient}",
            NumberOfStudyRelatedInstances=1,
        )

    def studies(c: DICOMwebClient) -> list[str]:
        results = c.search_for_studies(search_filters={"PatientID": f"{patient_id}-*"})
        return [values(r, "StudyInstanceUID")[0] for r in results]

    assert studies(client) == [default_study]
    assert studies(by_path) == [b_study]
    assert studies(by_header) == [b_study]

    (b_result,) = by_path.search_for_studies(search_filters={"PatientID": b_patient})
    assert retrieve_path(b_result) == f"/tenants/tenant-b/dicom-web/studies/{b_study}"
    (b_by_header,) = by_header.search_for_studies(search_filters={"PatientID": b_patient})
    assert retrieve_path(b_by_header) == f"/dicom-web/studies/{b_study}"
    assert client.search_for_series(study_instance_uid=b_study) == []
    assert client.search_for_instances(search_filters={"SOPInstanceUID": f"{b_study}.1.1"}) == []
    assert by_path.search_for_series(study_instance_uid=default_study) == []
    assert len(by_path.search_for_instances(study_instance_uid=b_study)) == 1


def test_http_details_encoding_errors_and_empty_results(
    system: RunningServices, tmp_path: Path, uid_root: str, patient_id: str
) -> None:
    study = f"{uid_root}.1"
    store_study(system, tmp_path, study, patient_id, [("CT", 1)], patient_name=JAPANESE)
    url = f"{system.api_url}/dicom-web/studies"
    json_accept = {"Accept": "application/dicom+json"}

    def by_encoded_name() -> httpx.Response | None:
        # dicomweb-client percent-encodes `*`; the query string is decoded before matching
        response = httpx.get(
            f"{url}?PatientID={patient_id}&PatientName=Yam%2A", headers=json_accept
        )
        return response if response.json() else None

    response = wait_for(by_encoded_name, 30, 0.2, "the study by an encoded wild card")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    (result,) = response.json()
    assert values(result, "StudyInstanceUID") == [study]
    assert values(result, "RetrieveURL") == [f"{url}/{study}"]  # httpx sends Host with its port

    empty = httpx.get(url, params={"PatientID": f"{patient_id}-none"}, headers=json_accept)
    assert (empty.status_code, empty.json()) == (200, [])

    unknown = httpx.get(url, params={"PatientNmae": "x"}, headers=json_accept)
    assert unknown.status_code == 400
    assert "PatientNmae" in unknown.json()["detail"]
    too_deep = httpx.get(url, params={"SOPClassUID": "1.2"}, headers=json_accept)
    assert too_deep.status_code == 400
    assert "instance attribute" in too_deep.json()["detail"]
    bad_date = httpx.get(url, params={"StudyDate": "2024-01-01"}, headers=json_accept)
    assert bad_date.status_code == 400

    xml = httpx.get(url, headers={"Accept": "multipart/related; type=application/dicom+xml"})
    assert xml.status_code == 406
    assert "application/dicom+json" in xml.json()["detail"]
    bad_uid = httpx.get(f"{url}/1.2.x/series", headers=json_accept)
    assert bad_uid.status_code == 400


async def test_a_limit_chosen_by_the_server_is_announced_by_a_warning() -> None:
    rows = [defaultdict(lambda: None, StudyInstanceUID=f"1.2.{n}") for n in range(3)]

    class Pool:
        async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
            return rows[: args[-2]]  # LIMIT $n OFFSET $m: the page plus one row

    app = FastAPI()
    app.state.api = SimpleNamespace(
        settings=Settings(qido_default_limit=2, qido_max_limit=2), search_pool=Pool()
    )
    app.include_router(qido.router, prefix="/dicom-web")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        chosen = await http.get("/dicom-web/studies")
        asked = await http.get("/dicom-web/studies", params={"limit": "2"})
    assert [values(r, "StudyInstanceUID") for r in chosen.json()] == [["1.2.0"], ["1.2.1"]]
    assert chosen.headers["warning"].startswith('299 http://testserver/dicom-web: "The number')
    assert "warning" not in asked.headers


QUERIES = [
    (Level.STUDY, [], {}),
    (Level.STUDY, [("PatientName", "Yam*")], {}),
    (Level.STUDY, [("PatientName", "山田^太郎")], {}),
    (Level.STUDY, [("PatientName", "tar yam"), ("fuzzymatching", "true")], {}),
    (Level.STUDY, [("ReferringPhysicianName", "Doe*")], {}),
    (Level.STUDY, [("PatientID", "P1")], {}),
    (Level.STUDY, [("PatientID", "*P1*")], {}),
    (Level.STUDY, [("AccessionNumber", "A1")], {}),
    (Level.STUDY, [("StudyDescription", "*head*")], {}),
    (Level.STUDY, [("StudyID", "7")], {}),
    (Level.STUDY, [("StudyDate", "20240101-20240301")], {}),
    (Level.STUDY, [("StudyDate", "20240101-"), ("StudyTime", "1000-")], {}),
    (Level.STUDY, [("ModalitiesInStudy", "CT\\MR")], {}),
    (Level.STUDY, [("StudyInstanceUID", "1.2.3,1.2.4")], {}),
    (Level.SERIES, [], {}),
    (Level.SERIES, [("SeriesInstanceUID", "1.2.3.1")], {}),
    (Level.SERIES, [("Modality", "CT")], {}),
    (Level.SERIES, [("SeriesDescription", "Ax*")], {}),
    (Level.SERIES, [("ModalitiesInStudy", "MR")], {}),
    (Level.SERIES, [("SeriesNumber", "1")], {"study_uid": "1.2.3"}),
    (Level.INSTANCE, [], {}),
    (Level.INSTANCE, [("SOPInstanceUID", "1.2.3.1.1")], {}),
    (Level.INSTANCE, [("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2")], {}),
    (Level.INSTANCE, [("PatientID", "P1")], {}),
    (Level.INSTANCE, [("InstanceNumber", "2")], {"study_uid": "1.2.3"}),
    (Level.INSTANCE, [("includefield", "all")], {"study_uid": "1.2.3", "series_uid": "1.2.3.1"}),
]


async def test_every_supported_query_can_be_served_by_an_index(stack: Settings) -> None:
    connection = await asyncpg.connect(stack.postgres_url)
    try:
        await connection.execute("SET enable_seqscan = off")
        for level, pairs, scope in QUERIES:
            query = parse_query(pairs, level, default_limit=100, max_limit=1000, **scope)
            sql, args = build_select(query, "qido-plan-check")
            plan = "\n".join(r[0] for r in await connection.fetch(f"EXPLAIN {sql}", *args))
            assert "Seq Scan" not in plan, f"{level.name} {pairs}:\n{plan}"
            assert await connection.fetch(sql, *args) == []
    finally:
        await connection.close()
