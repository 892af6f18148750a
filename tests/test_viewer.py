"""The OHIF viewer served by the API, driven in headless Chromium (Debian's `chromium`).

For the default tenant (`/viewer/`) and for tenant-b (`/tenants/tenant-b/viewer/`): the study
list shows every study of that tenant stored here, with its patient name as stored (a UTF-8
Japanese name among them) and none of the other tenant's; a search by name finds its study;
opening a study shows one thumbnail per series (rendered by the server) and draws the image in
the viewport; no request the viewer made to the API failed, and every DICOMweb one went to
that tenant's base URL. Screenshots of both pages are saved in test-output/.

The database is shared with other tests and kept between runs: both tenants' studies get one
accession number unique to this run, and the study list is opened filtered by it
(`?accession=`), as a user would bookmark it.
"""

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Request, Response, expect, sync_playwright
from pydicom.uid import generate_uid

from dicomflow.api.main import create_app
from dicomflow.core.settings import Settings
from tests.dicom_factory import make_ct
from tests.services import RunningServices, storescu, wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
# Root on a closed network: no sandbox, and none of Chromium's own connections to Google.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A returning user: the investigational-use notice confirmed, the basic viewer's tour seen.
RETURNING_USER = """
sessionStorage.setItem('investigationalUseDialog', 'hidden');
localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']));
"""
TIMEOUT_MS = 60_000
AE_OF = {"default": "DICOMFLOW", "tenant-b": "TENANT_B"}
SLICES = 4

# Luminance statistics of the viewport's canvas (cornerstone draws into a 2D canvas).
CANVAS_STATS = """() => {
  const canvas = document.querySelector('canvas.cornerstone-canvas');
  if (!canvas || !canvas.width || !canvas.height) return null;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0, squares = 0, bright = 0;
  for (let i = 0; i < data.length; i += 4) {
    const v = (data[i] + data[i + 1] + data[i + 2]) / 3;
    sum += v;
    squares += v * v;
    if (v > 200) bright++;
  }
  const n = data.length / 4, mean = sum / n;
  return {mean: mean, std: Math.sqrt(squares / n - mean * mean), bright: bright / n};
}"""
THUMBNAILS_LOADED = """(count) => {
  const images = [...document.querySelectorAll('[data-cy="study-browser-thumbnail"] img')];
  return images.length === count && images.every(i => i.complete && i.naturalWidth > 0);
}"""


@dataclass(frozen=True)
class Study:
    tenant: str
    patient_name: str
    study_date: str
    description: str
    series: tuple[str, ...]
    uid: str = field(default_factory=generate_uid)

    @property
    def listed_name(self) -> str:
        """The name as the study list shows it: `Family, Given` of the stored `Family^Given`."""
        return ", ".join(self.patient_name.split("^"))


@dataclass(frozen=True)
class Stored:
    accession: str
    studies: list[Study]

    def of(self, tenant: str) -> list[Study]:
        return [s for s in self.studies if s.tenant == tenant]


@dataclass
class NetworkLog:
    """The page's requests to the API (viewer files and DICOMweb): each response, each
    failure, and those still running."""

    api_url: str
    responses: list[tuple[int, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    pending: set[Request] = field(default_factory=set)

    def watch(self, page: Page) -> None:
        page.on("request", lambda r: self.pending.add(r) if self._ours(r.url) else None)
        page.on("response", self._response)
        page.on("requestfinished", lambda r: self.pending.discard(r))
        page.on("requestfailed", self._failed)

    def _ours(self, url: str) -> bool:
        return url.startswith(self.api_url + "/")

    def _response(self, response: Response) -> None:
        if self._ours(response.url):
            self.responses.append((response.status, response.url))

    def _failed(self, request: Request) -> None:
        self.pending.discard(request)
        if self._ours(request.url):
            self.failures.append(f"{request.url}: {request.failure}")

    def unanswered(self) -> list[str]:
        """Failed requests, except those the page cancelled itself (`net::ERR_ABORTED`, as
        OHIF does when it draws a list again) and then made again and got answered."""
        answered = {url for status, url in self.responses if status < 400}
        return [
            failure
            for failure in self.failures
            if not (
                failure.endswith(": net::ERR_ABORTED")
                and failure.removesuffix(": net::ERR_ABORTED") in answered
            )
        ]

    def wait_idle(self, page: Page, timeout: float = 30.0) -> None:
        """Until no request to the API has been running for half a second."""
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 0.5:
            if self.pending:
                quiet_since = time.monotonic()
            assert time.monotonic() < deadline, f"still running: {[r.url for r in self.pending]}"
            page.wait_for_timeout(100)  # lets Playwright deliver the page's events

    def dicomweb_paths(self) -> list[str]:
        paths = (urlsplit(url).path for _, url in self.responses)
        return [path for path in paths if "/dicom-web/" in path]


# --- the data: synthetic CT slices that look like a chest ---------------------------------


def phantom(size: int, index: int) -> np.ndarray:
    """Hounsfield units of a chest-like slice: body, lungs, spine, a lesion growing with index."""
    y, x = np.mgrid[0:size, 0:size] / size - 0.5
    hu = np.full((size, size), -1000.0)
    hu[(x / 0.45) ** 2 + (y / 0.33) ** 2 < 1] = -80  # fat
    hu[(x / 0.42) ** 2 + (y / 0.30) ** 2 < 1] = 40  # soft tissue
    for side in (-1, 1):
        hu[((x - side * 0.2) / 0.15) ** 2 + ((y + 0.02) / 0.22) ** 2 < 1] = -850  # lungs
    hu[x**2 + (y - 0.2) ** 2 < 0.05**2] = 700  # vertebra
    hu[x**2 + (y + 0.05) ** 2 < 0.06**2] = 200  # aorta with contrast
    hu[(x - 0.22) ** 2 + (y + 0.05) ** 2 < (0.02 + 0.01 * index) ** 2] = 60  # lesion
    return hu


def write_series(folder: Path, study: Study, accession: str, number: int) -> list[Path]:
    series_uid = generate_uid()
    lung = "lung" in study.series[number - 1].lower()
    paths = []
    for index in range(1, SLICES + 1):
        path = folder / f"{study.uid}-{number}-{index}.dcm"
        ds = make_ct(
            path,
            study_uid=study.uid,
            series_uid=series_uid,
            instance_number=index,
            patient_name=study.patient_name,
            patient_id=f"{accession}-{study.uid[-6:]}",
            study_date=study.study_date,
            size=256,
        )
        ds.AccessionNumber = accession
        ds.StudyDescription = study.description
        ds.SeriesDescription = study.series[number - 1]
        ds.SeriesNumber = number
        ds.WindowCenter, ds.WindowWidth = (-600, 1500) if lung else (40, 400)
        ds.PixelData = (phantom(256, index) + 1024).clip(0, 4095).astype(np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def stored(system: RunningServices, tmp_path_factory: pytest.TempPathFactory) -> Stored:
    """Three studies in the default tenant (one of two series), one in tenant-b."""
    accession = f"VW{uuid.uuid4().hex[:12].upper()}"
    studies = [
        Study("default", "山田^太郎", "20240305", "CT chest", ("Chest 1 mm", "Chest lung")),
        Study("default", "Müller^Jürgen", "20231111", "CT thorax", ("Thorax",)),
        Study("default", "Doe^Jane", "20240102", "CT chest low dose", ("Low dose",)),
        Study("tenant-b", "Smith^Anna", "20240210", "CT chest", ("Chest",)),
    ]
    folder = tmp_path_factory.mktemp("viewer")
    for tenant, ae in AE_OF.items():
        files = [
            path
            for study in studies
            if study.tenant == tenant
            for number in range(1, len(study.series) + 1)
            for path in write_series(folder, study, accession, number)
        ]
        result = storescu(system.scp_port, files, ae)
        assert result.returncode == 0, result.stderr
    for tenant in AE_OF:
        expected = {s.uid: SLICES * len(s.series) for s in studies if s.tenant == tenant}
        wait_for(
            lambda tenant=tenant, expected=expected: (
                _indexed(system, tenant, accession) == expected
            ),
            60,
            0.3,
            f"{tenant}'s studies to be indexed",
        )
    return Stored(accession, studies)


def _indexed(system: RunningServices, tenant: str, accession: str) -> dict[str, int]:
    """Study UID -> number of instances, of the tenant's studies with this accession number."""
    base = "/dicom-web" if tenant == "default" else f"/tenants/{tenant}/dicom-web"
    response = httpx.get(
        f"{system.api_url}{base}/studies",
        params={"AccessionNumber": accession, "includefield": "00201208"},
        headers={"Accept": "application/dicom+json"},
        timeout=10,
    )
    response.raise_for_status()
    return {r["0020000D"]["Value"][0]: r["00201208"]["Value"][0] for r in response.json()}


# --- the browser -------------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Chromium for one test: Playwright's sync API runs an event loop until it stops, which
    would keep this module's asyncio tests from running."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(RETURNING_USER)
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)  # the first load prepares 17 MB of bundles
    yield context.new_page()
    context.close()


@pytest.mark.parametrize("tenant", ["default", "tenant-b"])
def test_viewer_lists_and_shows_the_tenants_studies(
    tenant: str, stored: Stored, system: RunningServices, page: Page, output_dir: Path
) -> None:
    base = "" if tenant == "default" else f"/tenants/{tenant}"
    mine = stored.of(tenant)
    others = [s for s in stored.studies if s.tenant != tenant]
    network = NetworkLog(system.api_url)
    network.watch(page)
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))

    # The study list: every study of this tenant, with its name as stored, and nothing else.
    study_list = f"{system.api_url}{base}/viewer/?accession={stored.accession}"
    page.goto(study_list)
    rows = page.locator("tbody tr:not([data-filter-row])")
    for study in mine:
        expect(rows.filter(has_text=study.listed_name)).to_have_count(1)
    expect(rows).to_have_count(len(mine))
    listed = sorted(rows.nth(i).locator("td").first.inner_text() for i in range(len(mine)))
    assert listed == sorted(s.listed_name for s in mine)
    for other in others:
        expect(page.get_by_text(other.listed_name)).to_have_count(0)
    network.wait_idle(page)
    assert any(
        f"AccessionNumber=*{stored.accession}*" in unquote(url) for _, url in network.responses
    )
    page.screenshot(path=output_dir / f"viewer-{tenant}-study-list.png")

    # Searching by family name (Japanese for the default tenant) finds that study alone.
    study = mine[0]
    page.goto(f"{study_list}&patientName={quote(study.patient_name.split('^')[0])}")
    expect(rows.filter(has_text=study.listed_name)).to_have_count(1)
    expect(rows).to_have_count(1)
    network.wait_idle(page)

    # Open it in the basic viewer: its series' thumbnails and its image.
    rows.filter(has_text=study.listed_name).click()
    page.get_by_role("button", name="Basic Viewer").click()
    page.wait_for_url(re.compile(r"/viewer/viewer\?"))
    assert parse_qs(urlsplit(page.url).query)["StudyInstanceUIDs"] == [study.uid]
    labels = page.locator('[data-cy="series-description-label"]')
    expect(labels).to_have_count(len(study.series))
    for name in study.series:  # retried: the viewer may render the list again meanwhile
        expect(labels.filter(has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))).to_have_count(1)
    page.wait_for_function(THUMBNAILS_LOADED, arg=len(study.series))
    drawn = "() => { const s = (%s)(); return s !== null && s.std > 20 && s.bright > 0.01; }"
    try:
        page.wait_for_function(drawn % CANVAS_STATS)
    except Exception as exc:
        page.screenshot(path=output_dir / f"viewer-{tenant}-study-blank.png")
        raise AssertionError(f"viewport not drawn: {page.evaluate(CANVAS_STATS)}") from exc
    network.wait_idle(page)
    page.screenshot(path=output_dir / f"viewer-{tenant}-study.png")

    # Every request to the API succeeded; the DICOMweb ones all went to this tenant's base, and
    # each kind the viewer needs was used.
    failed = [(status, url) for status, url in network.responses if status >= 400]
    assert failed == [] and network.unanswered() == []
    prefix = f"{base}/dicom-web/"
    assert all(path.startswith(prefix) for path in network.dicomweb_paths()), (
        network.dicomweb_paths()
    )
    used = "\n".join(network.dicomweb_paths())
    series = rf"{prefix}studies/{study.uid}/series/[0-9.]+"
    for pattern in (
        rf"{prefix}studies$",
        rf"{series}/metadata$",
        rf"{series}/instances/[0-9.]+/frames/1$",
        rf"{series}(/instances/[0-9.]+)?/thumbnail$",
    ):
        assert re.search(pattern, used, re.MULTILINE), f"no request matches {pattern}"
    assert page_errors == []


# --- the files and settings, without a browser --------------------------------------------


def test_viewer_files_are_served_under_each_base(system: RunningServices) -> None:
    with httpx.Client(base_url=system.api_url, timeout=30) as client:
        redirect = client.get("/tenants/tenant-b/viewer")
        assert redirect.status_code == 308
        assert redirect.headers["location"] == "/tenants/tenant-b/viewer/"

        index = client.get("/tenants/tenant-b/viewer/viewer?StudyInstanceUIDs=1.2.3")
        assert index.status_code == 200
        assert 'window.PUBLIC_URL="/tenants/tenant-b/viewer/"' in index.text
        bundle = re.search(
            r'src="(/tenants/tenant-b/viewer/app\.bundle\.[0-9a-f]+\.js)"', index.text
        )
        assert bundle, index.text

        config = client.get("/tenants/tenant-b/viewer/app-config.js")
        assert f'"qidoRoot": "{system.api_url}/tenants/tenant-b/dicom-web"' in config.text
        assert '"routerBasename": "/tenants/tenant-b/viewer"' in config.text
        default_config = client.get("/viewer/app-config.js")
        assert f'"wadoRoot": "{system.api_url}/dicom-web"' in default_config.text

        js = client.get(bundle[1], headers={"Accept-Encoding": "gzip"})
        assert js.headers["content-encoding"] == "gzip"
        assert b'__webpack_require__.p = "/";' not in js.content
        assert b"window.PUBLIC_URL" in js.content
        again = client.get(bundle[1], headers={"If-None-Match": js.headers["etag"]})
        assert again.status_code == 304

        css = client.get("/viewer/app.bundle.css")
        assert "url(/" not in css.text and css.status_code == 200
        for missing in ("no-such-file.js", ".installed", "serve.json", "%2e%2e/README.md"):
            assert client.get(f"/viewer/{missing}").status_code == 404, missing
        # A name without an extension is one of the viewer's routes, never a build file.
        assert "window.PUBLIC_URL" in client.get("/viewer/_redirects").text
        assert client.get("/tenants/Not_A_Tenant/viewer/").status_code == 400


def _app(**settings: object) -> httpx.AsyncClient:
    """The API in process, without its lifespan: routes needing no database or broker answer."""
    values = Settings(**settings)  # type: ignore[arg-type]
    app = create_app(values)
    app.state.api = SimpleNamespace(settings=values)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver")


async def test_viewer_not_installed_is_a_clear_503(tmp_path: Path) -> None:
    async with _app(viewer_dir=tmp_path) as client:
        response = await client.get("/viewer/")
    assert response.status_code == 503
    assert "make setup" in response.json()["detail"]


async def test_cors_is_off_by_default() -> None:
    async with _app() as client:
        preflight = await client.options(
            "/dicom-web/studies",
            headers={"Origin": "http://viewer.example", "Access-Control-Request-Method": "GET"},
        )
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_allows_the_configured_origins_methods_and_headers() -> None:
    origin = "http://viewer.example"
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "accept"}
    async with _app(cors_origins=[origin], cors_methods=["GET"]) as client:
        allowed = await client.options(
            "/tenants/tenant-b/dicom-web/studies", headers={"Origin": origin, **preflight}
        )
        refused = await client.options(
            "/dicom-web/studies", headers={"Origin": "http://elsewhere.example", **preflight}
        )
        post = await client.options(
            "/dicom-web/studies",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        simple = await client.get("/viewer/app-config.js", headers={"Origin": origin})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == origin
    assert "accept" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in refused.headers
    assert post.status_code == 400
    assert simple.headers["access-control-allow-origin"] == origin
