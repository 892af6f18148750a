"""The DICOMweb service: lifespan opens the pool, Redis and Kafka once; routers mounted once."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import uvicorn
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from prometheus_client import make_asgi_app

from dicomflow.api import queries
from dicomflow.api.access_log import AccessLogMiddleware, AccessLogPublisher
from dicomflow.api.compression import GZIP_LEVEL, MIN_GZIP_SIZE, DerivedBodies
from dicomflow.api.drafts import Drafts
from dicomflow.api.frame_layouts import FrameLayouts
from dicomflow.api.index_changes import INSTANCE_CHANNEL, SERIES_CHANNEL, IndexChanges
from dicomflow.api.metadata import build_drafts_on_change
from dicomflow.api.notified_cache import NotifiedCache
from dicomflow.api.readahead import SeriesReadahead
from dicomflow.api.routes import health, qido, rendered, stow, viewer, wado
from dicomflow.api.row_prefetch import SeriesRowPrefetch
from dicomflow.api.single_flight import SingleFlight
from dicomflow.api.state import ApiState
from dicomflow.core import cache
from dicomflow.core.db import create_pool
from dicomflow.core.settings import Settings
from dicomflow.core.storage import LocalStorage
from dicomflow.core.urls import DICOMWEB_PREFIX
from dicomflow.ingest.publisher import EventPublisher
from dicomflow.ingest.store import InstanceStore

log = logging.getLogger(__name__)

# Only JSON is worth compressing: DICOM and image payloads are served as they are (NOTES.md).
NOT_COMPRESSED = (
    "multipart/related",
    "application/dicom",
    "application/octet-stream",
    "image/jpeg",
    "image/png",
    "image/jp2",
    "image/jpx",
    "image/jls",
    "image/jphc",
    "image/dicom-rle",
    "image/x-dicom-rle",
    "text/event-stream",
)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        kafka = AIOKafkaClient(bootstrap_servers=settings.kafka_servers, request_timeout_ms=5000)
        try:
            await kafka.bootstrap()
        except KafkaError as exc:
            log.warning("Kafka unreachable at start-up (%s); readiness will report it", exc)
        settings.stow_spool_dir.mkdir(parents=True, exist_ok=True)
        publisher = EventPublisher(settings, settings.api_outbox_file)
        await asyncio.to_thread(publisher.start)
        storage = LocalStorage(settings.storage_dir)
        pool = await create_pool(settings, generic_plans=True)
        index_changes = IndexChanges(settings.postgres_url)
        instance_rows = NotifiedCache(
            index_changes,
            INSTANCE_CHANNEL,
            partial(queries.instance, pool),
            settings.instance_cache_entries,
        )
        series_sources = NotifiedCache(
            index_changes,
            SERIES_CHANNEL,
            partial(queries.metadata_source, pool),
            settings.series_cache_entries,
            read_again=True,  # a viewer polls a series while it is received
        )
        row_prefetch = SeriesRowPrefetch(
            pool, index_changes, instance_rows, series_sources, settings.series_cache_entries
        )
        state = ApiState(
            settings=settings,
            pool=pool,
            search_pool=await create_pool(settings, max_size=5),
            redis=cache.connect(settings.redis_location),
            kafka=kafka,
            storage=storage,
            json_storage=LocalStorage(settings.json_dir),
            instances=InstanceStore(settings, storage, publisher),
            metadata_bodies=DerivedBodies(settings.metadata_cache_bytes),
            drafts=Drafts(settings.draft_cache_bytes),
            draft_builds=SingleFlight(),
            frame_layouts=FrameLayouts(settings.frame_layout_cache_entries),
            index_changes=index_changes,
            instance_rows=instance_rows,
            series_sources=series_sources,
            row_prefetch=row_prefetch,
            readahead=SeriesReadahead(
                partial(queries.series_files, pool),
                storage,
                settings.readahead_series_bytes,
                settings.series_cache_entries,
            ),
        )
        build_drafts_on_change(state)
        await index_changes.start()
        app.state.api = state
        access_log.start()
        yield
        await access_log.stop()
        await state.close()
        await asyncio.to_thread(publisher.stop)

    access_log = AccessLogPublisher(settings.kafka_servers)
    app = FastAPI(title="dicomflow DICOMweb", lifespan=lifespan)
    app.add_middleware(
        GZipMiddleware,
        minimum_size=MIN_GZIP_SIZE,
        compresslevel=GZIP_LEVEL,
        exclude_content_types=NOT_COMPRESSED,
    )
    if settings.cors_origins:
        # Inside the access log (preflights are logged too), outside every route.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=settings.cors_methods,
            allow_headers=settings.cors_headers,
            expose_headers=["Content-Location", "Location", "Warning"],
        )
    app.add_middleware(
        AccessLogMiddleware, publisher=lambda: access_log, default_tenant=settings.default_tenant
    )
    app.mount("/metrics", make_asgi_app())
    app.include_router(health.router)
    # Each router included once per prefix, never nested: FastAPI matches nested routers
    # level by level, which cost every WADO-RS request ~75 us.
    for prefix in (DICOMWEB_PREFIX, "/tenants/{tenant}" + DICOMWEB_PREFIX):
        for router in (wado.router, rendered.router, qido.router, stow.router):
            app.include_router(router, prefix=prefix)
    viewer_routes = viewer.create_router(settings)
    app.include_router(viewer_routes)
    app.include_router(viewer_routes, prefix="/tenants/{tenant}")
    return app


def serve(settings: Settings) -> None:
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        access_log=False,
    )
