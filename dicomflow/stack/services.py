"""The local services of the stack: PostgreSQL, Redis, Apache Kafka (KRaft), MariaDB.

Each lives under `{state_dir}/services/{name}`, listens on 127.0.0.1 only and is stopped
only by the stack that started it (it keeps the pid file).
"""

import base64
import glob
import os
import shutil
import socket
import uuid
from abc import ABC, abstractmethod
from pathlib import Path

from dicomflow.core.settings import Settings
from dicomflow.stack.process import (
    StackError,
    chown_for,
    read_pid,
    run,
    spawn,
    terminate,
    wait_until,
)

KAFKA_POM = Path(__file__).resolve().parents[2] / "stack" / "kafka" / "pom.xml"
READY_TIMEOUT = 120.0


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class LocalService(ABC):
    """A server process the stack runs on loopback."""

    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = (settings.state_dir / "services" / self.name).resolve()
        self.log_file = self.home / f"{self.name}.log"

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    @abstractmethod
    def pid_file(self) -> Path: ...

    @property
    def external(self) -> bool:
        """True when the settings point at a service we must use instead of starting one."""
        return False

    def running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def start(self) -> bool:
        """Start the service unless it runs already; return True when this call started it."""
        if self.external or self.running():
            return False
        if port_open(self.port):
            raise StackError(
                f"{self.name}: port {self.port} is taken by a process we did not start"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self.initialise()
        self.launch()
        if not wait_until(self.ready, READY_TIMEOUT, 0.3):
            raise StackError(f"{self.name} did not become ready; see {self.log_file}")
        return True

    def stop(self) -> bool:
        return not self.external and terminate(self.pid_file)

    @abstractmethod
    def initialise(self) -> None:
        """Create the data directory on the first start."""

    @abstractmethod
    def launch(self) -> None: ...

    def ready(self) -> bool:
        return port_open(self.port)


class PostgresService(LocalService):
    name = "postgres"
    user = "postgres"

    @property
    def port(self) -> int:
        return self.settings.postgres_port

    @property
    def external(self) -> bool:
        return self.settings.postgres_dsn is not None

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    @staticmethod
    def binary(name: str) -> str:
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key)
        if not candidates:
            raise StackError("PostgreSQL is not installed (Debian package postgresql)")
        return candidates[-1]

    def initialise(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        chown_for(self.home, self.user)
        run(
            [
                self.binary("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "dicomflow",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            user=self.user,
        )

    def launch(self) -> None:
        chown_for(self.home, self.user)
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.home} "
            "-c max_connections=200 -c shared_buffers=256MB -c fsync=on"
        )
        run(
            [
                self.binary("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "start",
            ],
            user=self.user,
        )

    def ready(self) -> bool:
        try:
            run([self.binary("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)])
        except StackError:
            return False
        return True

    def create_database(self) -> None:
        psql = [self.binary("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "dicomflow"]
        exists = run(
            [*psql, "-d", "postgres", "-tAc", "SELECT 1 FROM pg_database WHERE datname='dicomflow'"]
        ).strip()
        if not exists:
            run([*psql, "-d", "postgres", "-c", "CREATE DATABASE dicomflow"])

    def stop(self) -> bool:
        if self.external or not self.running():
            return False
        run(
            [self.binary("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            user=self.user,
        )
        return True


class RedisService(LocalService):
    name = "redis"

    @property
    def port(self) -> int:
        return self.settings.redis_port

    @property
    def external(self) -> bool:
        return self.settings.redis_url is not None

    @property
    def pid_file(self) -> Path:
        return self.home / "redis.pid"

    def initialise(self) -> None:
        if not shutil.which("redis-server"):
            raise StackError("Redis is not installed (Debian package redis-server)")

    def launch(self) -> None:
        run(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.home),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pid_file),
                "--logfile",
                str(self.log_file),
                "--save",
                "",
                "--appendonly",
                "no",
            ]
        )


class KafkaService(LocalService):
    """A single Apache Kafka node in KRaft mode (broker and controller), jars from Maven."""

    name = "kafka"

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    @property
    def external(self) -> bool:
        return self.settings.kafka_bootstrap is not None

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def libs(self) -> Path:
        return self.settings.state_dir.resolve() / "kafka-libs"

    def install(self) -> None:
        """Resolve the broker's jars from Maven Central with the build file kept in the repo."""
        if any(self.libs.glob("kafka_2.13-*.jar")):
            return
        if not shutil.which("mvn"):
            raise StackError("Maven is not installed (Debian package maven)")
        run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(KAFKA_POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self.libs}",
            ]
        )

    def initialise(self) -> None:
        self.install()
        data = self.home / "data"
        config = self.home / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.settings.kafka_controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.settings.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={data}",
                    f"num.partitions={self.settings.topic_partitions}",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    # A local broker shares a small machine with everything else: fewer
                    # threads than Kafka's 8 + 3 switch less
                    "num.io.threads=2",
                    "num.network.threads=2",
                    "",
                ]
            )
        )
        (self.home / "log4j.properties").write_text(
            "\n".join(
                [
                    "log4j.rootLogger=WARN, stdout",
                    "log4j.logger.kafka=INFO",
                    "log4j.appender.stdout=org.apache.log4j.ConsoleAppender",
                    "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout",
                    "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n",
                    "",
                ]
            )
        )
        if (data / "meta.properties").exists():
            return
        cluster_id = kafka_cluster_id()
        run(
            [
                "java",
                "-cp",
                f"{self.libs}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config),
            ]
        )

    def launch(self) -> None:
        spawn(
            [
                "java",
                "-Xms256m",
                "-Xmx768m",
                # C1 only: C2 kept compiling the broker's request paths for minutes, as much
                # CPU as the requests themselves; with the serial collector (a small heap),
                # the broker's CPU per stored instance fell from 1.2-3.7 to 0.8-1.4 ms
                # (bench/README.md, fourth session)
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
                "-cp",
                f"{self.libs}/*",
                "kafka.Kafka",
                str(self.home / "server.properties"),
            ],
            log_file=self.log_file,
            pid_file=self.pid_file,
        )


class MariaDBService(LocalService):
    name = "mariadb"
    user = "mysql"

    @property
    def port(self) -> int:
        return self.settings.mariadb_port

    @property
    def external(self) -> bool:
        return self.settings.mysql_dsn is not None

    @property
    def pid_file(self) -> Path:
        return self.home / "mariadb.pid"

    @property
    def socket_path(self) -> Path:
        return self.home / "mariadb.sock"

    def _server_options(self) -> list[str]:
        options = [f"--datadir={self.home / 'data'}"]
        if os.geteuid() == 0:
            options.append(f"--user={self.user}")
        return options

    def initialise(self) -> None:
        if not shutil.which("mariadbd"):
            raise StackError("MariaDB is not installed (Debian package mariadb-server)")
        if (self.home / "data" / "mysql").exists():
            return
        chown_for(self.home, self.user)
        run(
            [
                "mariadb-install-db",
                *self._server_options(),
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ]
        )

    def launch(self) -> None:
        chown_for(self.home, self.user)
        spawn(
            [
                "mariadbd",
                "--no-defaults",
                *self._server_options(),
                "--bind-address=127.0.0.1",
                f"--port={self.port}",
                f"--socket={self.socket_path}",
                f"--pid-file={self.home / 'mariadbd.pid'}",
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
                "--innodb-buffer-pool-size=128M",
            ],
            log_file=self.log_file,
            pid_file=self.pid_file,
        )

    def create_database(self) -> None:
        statements = (
            "CREATE DATABASE IF NOT EXISTS dicomflow CHARACTER SET utf8mb4; "
            "CREATE USER IF NOT EXISTS 'dicomflow'@'127.0.0.1' IDENTIFIED BY 'dicomflow'; "
            "GRANT ALL ON dicomflow.* TO 'dicomflow'@'127.0.0.1';"
        )
        run(["mariadb", f"--socket={self.socket_path}", "-uroot", "-e", statements])


def _version_key(path: str) -> int:
    try:
        return int(Path(path).parent.parent.name)
    except ValueError:
        return 0


def kafka_cluster_id() -> str:
    """A random KRaft cluster id as `kafka-storage random-uuid` makes one: URL-safe base64 of
    16 random bytes, never starting with `-` (the tool would take it for an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text
