"""What the WADO-RS routes share: the Accept header, instance lookup, error statuses."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import asyncpg
from fastapi import Header, HTTPException

from dicomflow.api.deps import InstanceRef
from dicomflow.api.negotiation import NotAcceptable
from dicomflow.api.pixels import CannotDecode, NotFound

T = TypeVar("T")
Accept = Annotated[str | None, Header()]


async def instance_row(ref: InstanceRef) -> asyncpg.Record:
    """A tenant's instance (`queries.instance`), or 404."""
    row = await ref.state.instance_rows.get(ref.tenant, ref.study, ref.series, ref.instance)
    if row is None:
        raise HTTPException(404, f"instance {ref.instance} not found")
    return row


async def instance_key(ref: InstanceRef) -> str:
    """The storage key of a tenant's instance, or 404."""
    return (await instance_row(ref))["file_path"]


@contextmanager
def http_errors() -> Iterator[None]:
    """Map NotFound to 404, NotAcceptable and CannotDecode to 406."""
    try:
        yield
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except (NotAcceptable, CannotDecode) as exc:
        raise HTTPException(406, str(exc)) from exc


def parse_or_400(parse: Callable[[str], T], text: str) -> T:
    """`parse(text)`, its ValueError answered with 400."""
    try:
        return parse(text)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc
