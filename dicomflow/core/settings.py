"""The one settings object: every field can be given as a `DICOMFLOW_*` environment variable."""

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dicomflow.core.identifiers import validate_ae_title, validate_tenant


class Settings(BaseSettings):
    """Configuration of every dicomflow service, validated at start-up."""

    model_config = SettingsConfigDict(env_prefix="DICOMFLOW_", frozen=True)

    state_dir: Path = Field(Path(".stack"), description="Local state: data, logs, services.")
    storage_root: Path | None = Field(None, description="DICOM files; default state_dir/dicom.")
    json_root: Path | None = Field(None, description="Series metadata; default state_dir/json.")
    outbox_path: Path | None = Field(None, description="SCP outbox; default state_dir/outbox.db.")

    default_tenant: str = "default"

    ae_title: str = "DICOMFLOW"
    scp_host: str = "127.0.0.1"
    scp_port: int = 11112
    ae_tenants: dict[str, str] = Field(
        default_factory=dict, description="Called AE title -> tenant, besides ae_title."
    )
    allowed_calling_aes: list[str] = Field(
        default_factory=list, description="Calling AE titles accepted; empty accepts any."
    )
    max_pdu_size: int = 262144
    max_associations: int = 32
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0

    scp_metrics_port: int = Field(9112, description="Prometheus metrics of the SCP; 0: off.")
    worker_metrics_port: int = Field(9113, description="Prometheus metrics of the worker; 0: off.")

    public_url: str | None = Field(
        None, description="Base URL clients use (behind a proxy), for absolute URLs in answers."
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    qido_max_limit: int = Field(1000, description="Most results one QIDO-RS response returns.")
    qido_default_limit: int = Field(100, description="QIDO-RS results when no limit is given.")
    api_outbox_path: Path | None = Field(
        None, description="API (STOW-RS) outbox; default state_dir/outbox-api.db."
    )
    stow_spool_path: Path | None = Field(
        None, description="STOW-RS parts are spooled here (unnamed files); default state_dir/spool."
    )
    stow_max_part_bytes: int = Field(
        4 * 2**30, description="Largest STOW-RS body part (one instance); larger parts fail."
    )
    stow_max_body_bytes: int = Field(64 * 2**30, description="Largest STOW-RS request body (413).")
    metadata_cache_bytes: int = Field(
        128 * 2**20,
        description="Memory each API process keeps for series and study metadata bodies as"
        " served (absolute URIs, gzipped), with the stored body each came from.",
    )
    draft_cache_bytes: int = Field(
        64 * 2**20,
        description="Memory each API process keeps for the metadata of series not stable yet"
        " as it last built each, with each instance's part (a new version fetches only its new"
        " instances' parts from Redis).",
    )
    instance_cache_entries: int = Field(
        50_000,
        description="Instance rows each API process keeps while PostgreSQL notifies their"
        " changes (~1.1 kB each); 0: none.",
    )
    series_cache_entries: int = Field(
        20_000,
        description="Series whose metadata source (precomputed file, or version and instances"
        " of a series not stable yet) each API process keeps while PostgreSQL notifies their"
        " changes (~0.5 kB each, plus ~0.5 kB per instance of a series not stable); 0: none.",
    )
    frame_layout_cache_entries: int = Field(
        50_000,
        description="Stored files whose frame positions each API process remembers (~1.2 kB"
        " each, and 16 bytes a frame for compressed multi-frame values over 1 MiB): a frame"
        " request then needs no header parse; 0: none.",
    )
    readahead_series_bytes: int = Field(
        512 * 2**20,
        description="After answering a series' metadata, how much of the series' files each"
        " API process asks the kernel to read into the page cache, in instance order (a viewer"
        " asks for every instance's frames next); a series asked for again within 30 s is not"
        " read ahead again; 0: off.",
    )
    viewer_dir: Path = Field(
        Path("viewer/dist"), description="The OHIF viewer served at /viewer/ (make setup)."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins browsers may call the API from; empty: off."
    )
    cors_methods: list[str] = Field(
        default_factory=lambda: ["GET", "POST"], description="HTTP methods allowed by CORS."
    )
    cors_headers: list[str] = Field(
        default_factory=lambda: ["Accept", "Authorization", "Content-Type", "X-Tenant"],
        description="Request headers allowed by CORS.",
    )

    kafka_bootstrap: str | None = Field(None, description="External broker; unset starts one.")
    postgres_dsn: str | None = Field(None, description="External PostgreSQL; unset starts one.")
    redis_url: str | None = Field(None, description="External Redis; unset starts one.")
    mysql_dsn: str | None = Field(None, description="External MySQL-protocol analytics target.")
    analytics_dialect: Literal["mariadb", "mysql", "doris"] = Field(
        "mariadb", description="SQL dialect of the analytics target (mysql_url)."
    )
    analytics_batch_rows: int = Field(500, description="Most rows the sink writes per statement.")
    analytics_batch_seconds: float = Field(
        1.0, description="Longest wait, in seconds, for a sink batch to fill."
    )
    analytics_metrics_port: int = Field(
        9114, description="Prometheus metrics of the analytics sink; 0: off."
    )

    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    postgres_port: int = 54329
    redis_port: int = 63799
    mariadb_port: int = 33069

    topic_partitions: int = 4
    publish_timeout_ms: int = 5000
    series_stable_seconds: float = 10.0
    table_store: str = Field("memory://", description="Faust table store (changelog in Kafka).")
    metadata_retry_limit: int = 5
    worker_ingest_yield_seconds: float = Field(
        2.0,
        description="While storage events keep arriving (a burst of C-STOREs), the worker"
        " waits up to this long before indexing them, so that indexing does not slow the SCP"
        " down; 0: index at once.",
    )
    worker_stuck_seconds: float = Field(
        30.0, description="A partition whose commit is stuck this long is read again."
    )
    worker_session_timeout: float = Field(
        10.0, description="Seconds before Kafka gives a dead worker's partitions to another."
    )
    background_scheduling: Literal["idle", "normal"] = Field(
        "idle",
        description="CPU scheduling of the consumers (worker, analytics sink): `idle` (Linux "
        "SCHED_IDLE) lets the SCP, the API and Kafka run first whenever they are ready, so on a "
        "shared machine a C-STORE is answered sooner and indexing uses the CPU time they leave "
        "(lagging under load, catching up from Kafka); `normal` for consumers on machines of "
        "their own.",
    )
    node_id: str = "node-1"

    @field_validator("default_tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        return validate_tenant(value)

    @field_validator("ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        return validate_ae_title(value)

    @field_validator("ae_tenants")
    @classmethod
    def _ae_tenants(cls, value: dict[str, str]) -> dict[str, str]:
        return {validate_ae_title(ae): validate_tenant(tenant) for ae, tenant in value.items()}

    @property
    def storage_dir(self) -> Path:
        return (self.storage_root or self.state_dir / "dicom").resolve()

    @property
    def json_dir(self) -> Path:
        return (self.json_root or self.state_dir / "json").resolve()

    @property
    def outbox_file(self) -> Path:
        return (self.outbox_path or self.state_dir / "outbox.db").resolve()

    @property
    def api_outbox_file(self) -> Path:
        return (self.api_outbox_path or self.state_dir / "outbox-api.db").resolve()

    @property
    def stow_spool_dir(self) -> Path:
        return (self.stow_spool_path or self.state_dir / "spool").resolve()

    @property
    def kafka_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def postgres_url(self) -> str:
        return (
            self.postgres_dsn or f"postgresql://dicomflow@127.0.0.1:{self.postgres_port}/dicomflow"
        )

    @property
    def mysql_url(self) -> str:
        """The analytics target: `mysql://user:password@host:port/database`."""
        return (
            self.mysql_dsn or f"mysql://dicomflow:dicomflow@127.0.0.1:{self.mariadb_port}/dicomflow"
        )

    @property
    def redis_location(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @cached_property
    def tenant_by_called_ae(self) -> dict[str, str]:
        """Called AE title -> tenant; the SCP's own title maps to the default tenant."""
        return {**self.ae_tenants, self.ae_title: self.default_tenant}
