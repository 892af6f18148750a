"""Liveness and readiness: ready only when PostgreSQL, Redis and Kafka answer."""

import asyncio

from fastapi import APIRouter
from fastapi.responses import ORJSONResponse

from dicomflow.api.deps import State

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/ready")
async def ready(state: State) -> ORJSONResponse:
    async def postgres() -> bool:
        try:
            await asyncio.wait_for(state.pool.fetchval("SELECT 1"), 2.0)
        except Exception:  # any failure means "down"; the reason is in the component's log
            return False
        return True

    async def redis() -> bool:
        try:
            return bool(await asyncio.wait_for(state.redis.ping(), 2.0))
        except Exception:  # any failure means "down"
            return False

    names = ("postgresql", "redis", "kafka")
    results = await asyncio.gather(postgres(), redis(), state.kafka_reachable())
    components = {name: "up" if ok else "down" for name, ok in zip(names, results, strict=True)}
    failing = [name for name, ok in zip(names, results, strict=True) if not ok]
    if failing:
        return ORJSONResponse(
            {"status": "unavailable", "failing": failing, "components": components},
            status_code=503,
        )
    return ORJSONResponse({"status": "ready", "components": components})
