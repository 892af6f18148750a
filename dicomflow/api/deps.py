"""Route dependencies as `Annotated` aliases, so a signature says what the route needs.

They are `async def` although they never await: FastAPI runs a plain `def` dependency in a
worker thread, a hop that costs more than the dependency itself.
"""

from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request

from dicomflow.api.state import ApiState
from dicomflow.core.identifiers import InvalidIdentifier, validate_tenant, validate_uid


async def get_state(request: Request) -> ApiState:
    return request.app.state.api


def tenant_of(request: Request) -> str:
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


async def get_tenant(request: Request) -> str:
    return tenant_of(request)


def uid_of(request: Request, name: str) -> str:
    """The path parameter `name` validated as a DICOM UID (400 otherwise)."""
    try:
        return validate_uid(request.path_params[name], name)
    except InvalidIdentifier as exc:
        raise HTTPException(400, str(exc)) from exc


@dataclass(frozen=True, slots=True)
class StudyRef:
    """A study a route acts on: the service state, the tenant and the validated UIDs.

    One dependency per route instead of one per UID: each costs FastAPI ~10 us a request.
    """

    state: ApiState
    tenant: str
    study: str


@dataclass(frozen=True, slots=True)
class SeriesRef(StudyRef):
    series: str


@dataclass(frozen=True, slots=True)
class InstanceRef(SeriesRef):
    instance: str


Ref = TypeVar("Ref", bound=StudyRef)


def _ref(request: Request, kind: type[Ref], *uids: str) -> Ref:
    """A `kind` of the request's state, tenant and path UIDs `uids` (validated)."""
    return kind(request.app.state.api, tenant_of(request), *[uid_of(request, n) for n in uids])


async def get_study(request: Request) -> StudyRef:
    return _ref(request, StudyRef, "study")


async def get_series(request: Request) -> SeriesRef:
    return _ref(request, SeriesRef, "study", "series")


async def get_instance(request: Request) -> InstanceRef:
    return _ref(request, InstanceRef, "study", "series", "instance")


State = Annotated[ApiState, Depends(get_state)]
Tenant = Annotated[str, Depends(get_tenant)]
Study = Annotated[StudyRef, Depends(get_study)]
Series = Annotated[SeriesRef, Depends(get_series)]
Instance = Annotated[InstanceRef, Depends(get_instance)]


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
