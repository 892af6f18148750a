"""Route dependencies as `Annotated` aliases, so a signature says what the route needs.

They are `async def` although they never await: FastAPI runs a plain `def` dependency in a
worker thread, a hop that costs more than the dependency itself.
"""

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from dicomflow.api.state import ApiState
from dicomflow.core.identifiers import InvalidIdentifier, validate_tenant, validate_uid


async def get_state(request: Request) -> ApiState:
    return request.app.state.api


async def get_tenant(request: Request) -> str:
    """The tenant from `/tenants/{tenant}/...`, else the `X-Tenant` header, else the default."""
    state: ApiState = request.app.state.api
    tenant = (
        request.path_params.get("tenant")
        or request.headers.get("x-tenant")
        or state.settings.default_tenant
    )
    try:
        return validate_tenant(tenant)
    except InvalidIdentifier as exc:
        raise HTTPException(400, str(exc)) from exc


def uid_param(name: str):  # type: ignore[no-untyped-def]
    """A dependency that validates the path parameter `name` as a DICOM UID (400 otherwise)."""

    async def dependency(request: Request) -> str:
        try:
            return validate_uid(request.path_params[name], name)
        except InvalidIdentifier as exc:
            raise HTTPException(400, str(exc)) from exc

    return dependency


State = Annotated[ApiState, Depends(get_state)]
Tenant = Annotated[str, Depends(get_tenant)]
StudyUID = Annotated[str, Depends(uid_param("study"))]
SeriesUID = Annotated[str, Depends(uid_param("series"))]
InstanceUID = Annotated[str, Depends(uid_param("instance"))]


def public_origin(request: Request) -> str:
    """`scheme://host[:port]` that clients reach this service at, for absolute URLs.

    `public_url` wins when set (behind a proxy). Otherwise the Host header, with the
    listening port added when the header has none: some clients (dicomweb-client 0.61)
    leave the port out of Host.
    """
    settings = request.app.state.api.settings
    if settings.public_url:
        return settings.public_url.rstrip("/")
    url = request.url
    if url.port is None and request.scope.get("server"):
        port = request.scope["server"][1]
        if port is not None and port != {"http": 80, "https": 443}.get(url.scheme):
            return f"{url.scheme}://{url.hostname}:{port}"
    return f"{url.scheme}://{url.netloc}"
