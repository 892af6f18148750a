"""The OHIF viewer: `/viewer/` for the default tenant, `/tenants/{tenant}/viewer/` for each.

The files are the published build installed by `make setup` (viewer/install.sh) into
`settings.viewer_dir`, adapted to their base path by `dicomflow.api.viewer_assets`.
`app-config.js` is generated per request: the viewer's one data source is this tenant's
DICOMweb base URL (`/dicom-web` or `/tenants/{tenant}/dicom-web`, absolute for this request's
origin or `public_url`). Any other path under the viewer that names no file is one of the
viewer's own routes (`viewer/viewer?StudyInstanceUIDs=...`) and gets index.html.
"""

import asyncio
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from dicomflow.api.compression import accepts_gzip
from dicomflow.api.deps import Tenant, public_origin
from dicomflow.api.viewer_assets import CONFIG, ViewerAssets, ViewerNotInstalled
from dicomflow.core.settings import Settings
from dicomflow.core.urls import DICOMWEB_PREFIX, tenant_base

VIEWER = "/viewer"
NO_CACHE = {"Cache-Control": "no-cache"}
# OHIF's DICOMweb data source (extension-default) pointed at this archive.
DATA_SOURCE = "@ohif/extension-default.dataSourcesModule.dicomweb"


def create_router(settings: Settings) -> APIRouter:
    """The viewer's routes, bound to its files; mounted at `/` and at `/tenants/{tenant}`.

    Every route takes `Tenant`, so that a malformed tenant in the path is a 400 here too.
    """
    assets = ViewerAssets(settings.viewer_dir)
    router = APIRouter(tags=["viewer"], include_in_schema=False)

    @router.get(VIEWER)
    async def viewer_redirect(request: Request, tenant: Tenant) -> RedirectResponse:
        return RedirectResponse(viewer_base(request), status_code=308)

    @router.get(f"{VIEWER}/{CONFIG}")
    async def app_config_js(request: Request, tenant: Tenant) -> Response:
        dicomweb = public_origin(request) + (
            tenant_base(tenant) if "tenant" in request.path_params else DICOMWEB_PREFIX
        )
        config = app_config(viewer_base(request), dicomweb, tenant)
        body = b"window.config = " + orjson.dumps(config, option=orjson.OPT_INDENT_2) + b";\n"
        return Response(body, media_type="text/javascript; charset=utf-8", headers=NO_CACHE)

    @router.get(VIEWER + "/{path:path}")
    async def viewer_file(request: Request, tenant: Tenant, path: str) -> Response:
        try:
            prepared = await asyncio.to_thread(assets.file, path)
            if prepared is None:
                if "." in path.rsplit("/", 1)[-1]:
                    raise HTTPException(404, f"the viewer has no file {path!r}")
                html = await asyncio.to_thread(assets.index_html, viewer_base(request))
                return Response(html, media_type="text/html; charset=utf-8", headers=NO_CACHE)
        except ViewerNotInstalled as exc:
            raise HTTPException(503, str(exc)) from exc
        if prepared.gzipped is None:
            return FileResponse(prepared.path, media_type=prepared.media_type, headers=NO_CACHE)
        gzipped = accepts_gzip(request.headers.get("accept-encoding"))
        etag = prepared.etag[:-1] + '-gzip"' if gzipped else prepared.etag
        headers = {**NO_CACHE, "ETag": etag, "Vary": "Accept-Encoding"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        if gzipped:
            body = prepared.gzipped
            headers["Content-Encoding"] = "gzip"
        else:
            body = await asyncio.to_thread(prepared.body)
        return Response(body, media_type=prepared.media_type, headers=headers)

    return router


def viewer_base(request: Request) -> str:
    """The path the viewer is served at for this request, ending with `/`."""
    prefix = urlsplit(public_origin(request)).path.rstrip("/")
    tenant = request.path_params.get("tenant")
    return prefix + (f"/tenants/{tenant}" if tenant else "") + VIEWER + "/"


def app_config(base: str, dicomweb: str, tenant: str) -> dict[str, Any]:
    """OHIF's `window.config`: one DICOMweb data source, the tenant's base URL `dicomweb`.

    What the archive serves decides the flags: QIDO-RS honours `includefield`, wild cards
    and `fuzzymatching`; WADO-RS serves series metadata (with BulkDataURIs) and frames,
    which the viewer decodes for display, and thumbnails, which the server renders (JPEG).
    """
    return {
        "routerBasename": base.rstrip("/") or "/",
        "showStudyList": True,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 25},
        "defaultDataSourceName": "dicomflow",
        "dataSources": [
            {
                "namespace": DATA_SOURCE,
                "sourceName": "dicomflow",
                "configuration": {
                    "friendlyName": f"dicomflow ({tenant})",
                    "name": "dicomflow",
                    "qidoRoot": dicomweb,
                    "wadoRoot": dicomweb,
                    "wadoUriRoot": dicomweb,
                    "qidoSupportsIncludeField": True,
                    "supportsFuzzyMatching": True,
                    "supportsWildcard": True,
                    "supportsReject": False,
                    "dicomUploadEnabled": False,
                    "staticWado": False,
                    "imageRendering": "wadors",
                    "thumbnailRendering": "thumbnail",
                    "thumbnailRequestStrategy": "fetch",
                    "enableStudyLazyLoad": True,
                    "bulkDataURI": {"enabled": True},
                    "omitQuotationForMultipartRequest": True,
                },
            }
        ],
    }
