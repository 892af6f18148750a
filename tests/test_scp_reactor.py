"""The SCP's event-driven association reactors: asleep while idle, and serving, timing out and
ending associations as pynetdicom's own reactors do."""

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pynetdicom import AE, _config, evt
from pynetdicom._handlers import standard_dimse_recv_handler
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from dicomflow.core.settings import Settings
from dicomflow.core.storage import LocalStorage
from dicomflow.ingest.reactor import TIMER_CHECK_INTERVAL, WakingAssociation
from dicomflow.ingest.server import build_ae, event_handlers, start_server
from dicomflow.ingest.store import InstanceStore
from tests.services import wait_for

IDLE_SECONDS = 0.5


@contextmanager
def serving(tmp_path: Path, **overrides: float) -> Iterator[ThreadedAssociationServer]:
    settings = Settings(scp_port=0, **overrides)
    store = InstanceStore(settings, LocalStorage(tmp_path), publisher=None)  # type: ignore[arg-type]
    server = start_server(build_ae(settings), settings, event_handlers(settings, store))
    try:
        yield server
    finally:
        server.shutdown()


def request_association(server: ThreadedAssociationServer) -> Association:
    requestor = AE(ae_title="REACTORTEST")
    requestor.add_requested_context(Verification)
    return requestor.associate("127.0.0.1", server.server_address[1], ae_title="DICOMFLOW")


def associate(server: ThreadedAssociationServer) -> Association:
    assoc = request_association(server)
    assert assoc.is_established
    return assoc


def accepted(server: ThreadedAssociationServer) -> WakingAssociation:
    (assoc,) = server.active_associations
    assert isinstance(assoc, WakingAssociation)
    return assoc


class CountingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return super().wait(timeout)


def test_an_idle_association_wakes_only_to_look_at_its_timers(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        assoc = associate(server)
        try:
            dul = accepted(server).dul
            dul_waits = 0
            wait_for_input = dul._wait_for_input

            def counted_wait_for_input() -> None:
                nonlocal dul_waits
                dul_waits += 1
                wait_for_input()

            dul._wait_for_input = counted_wait_for_input  # type: ignore[method-assign]
            dul.activity = CountingEvent()
            started = time.monotonic()
            time.sleep(IDLE_SECONDS)  # the idle period observed, not a wait for something
            most = (time.monotonic() - started) / TIMER_CHECK_INTERVAL + 2
            assert dul_waits <= most
            assert dul.activity.waits <= most
            assert assoc.send_c_echo().Status == 0x0000
        finally:
            assoc.release()


def test_an_idle_association_is_aborted_after_the_network_timeout(tmp_path: Path) -> None:
    with serving(tmp_path, network_timeout=0.3) as server:
        assoc = associate(server)
        wait_for(lambda: assoc.is_aborted, 10, 0.05, "the SCP to abort the idle association")
        wait_for(lambda: not server.active_associations, 10, 0.05, "the association to end")


@pytest.mark.parametrize("end", ["release", "abort"])
def test_an_ended_association_stops_its_threads(tmp_path: Path, end: str) -> None:
    with serving(tmp_path) as server:
        assoc = associate(server)
        assert assoc.send_c_echo().Status == 0x0000
        served = accepted(server)
        getattr(assoc, end)()
        wait_for(lambda: not served.is_alive(), 10, 0.05, "the association thread to end")
        wait_for(lambda: not served.dul.is_alive(), 10, 0.05, "the DUL thread to end")
        assert served.dul._wake_reader.fileno() == -1
        assert (served.is_released, served.is_aborted) == (end == "release", end == "abort")


def test_associations_beyond_the_maximum_are_rejected(tmp_path: Path) -> None:
    with serving(tmp_path, max_associations=1) as server:
        first = associate(server)
        try:
            assert request_association(server).is_rejected
            assert first.send_c_echo().Status == 0x0000
        finally:
            first.release()


@pytest.mark.parametrize(("level", "bound"), [(logging.INFO, False), (logging.DEBUG, True)])
def test_pynetdicoms_message_log_handlers_are_bound_only_for_its_debug_log(
    tmp_path: Path, level: int, bound: bool
) -> None:
    logger, handler_level = logging.getLogger("pynetdicom"), _config.LOG_HANDLER_LEVEL
    logger_level = logger.level
    logger.setLevel(level)
    try:
        with serving(tmp_path) as server:
            assoc = associate(server)
            handlers = accepted(server).get_handlers(evt.EVT_DIMSE_RECV)
            assoc.release()
    finally:
        logger.setLevel(logger_level)
        _config.LOG_HANDLER_LEVEL = handler_level
    assert any(handler is standard_dimse_recv_handler for handler, _ in handlers) == bound
