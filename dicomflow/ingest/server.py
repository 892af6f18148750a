"""The Storage SCP: builds the AE, binds storage and publisher to the handlers, serves."""

import logging
import signal
import threading

from prometheus_client import start_http_server
from pydicom.uid import (
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from dicomflow.core.settings import Settings
from dicomflow.core.storage import LocalStorage
from dicomflow.ingest.handlers import handle_requested, handle_store
from dicomflow.ingest.publisher import EventPublisher
from dicomflow.ingest.reactor import WakingRequestHandler
from dicomflow.ingest.store import InstanceStore

log = logging.getLogger(__name__)


NATIVE_PREFERENCE = [
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
]


def accepted_transfer_syntaxes() -> list[str]:
    """Every transfer syntax, in the order pynetdicom picks from a proposed context.

    Compressed syntaxes come first so that an instance arrives as the modality encoded it
    (no transcoding by the sender), then Explicit VR Little Endian before Big Endian and
    Implicit VR, so a sender is never asked to change byte order or lose VRs.
    """
    encapsulated = [uid for uid in AllTransferSyntaxes if uid not in NATIVE_PREFERENCE]
    return [*encapsulated, *NATIVE_PREFERENCE]


def build_ae(settings: Settings) -> AE:
    # pynetdicom's standard handlers describe every PDU and DIMSE message for its debug log
    # (~0.1 ms per C-STORE); bound only when that log is wanted.
    _config.LOG_HANDLER_LEVEL = (
        "standard" if logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG) else "none"
    )
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.maximum_associations = settings.max_associations
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.require_called_aet = True
    ae.require_calling_aet = settings.allowed_calling_aes
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, accepted_transfer_syntaxes())
    return ae


def event_handlers(settings: Settings, store: InstanceStore) -> list[evt.EventHandlerType]:
    return [
        (evt.EVT_REQUESTED, handle_requested, [settings]),
        (evt.EVT_C_STORE, handle_store, [settings, store]),
    ]


def start_server(
    ae: AE, settings: Settings, handlers: list[evt.EventHandlerType]
) -> ThreadedAssociationServer:
    """Listen in a thread of its own, each association served by the event-driven reactors."""
    server = ae.make_server(
        (settings.scp_host, settings.scp_port),
        evt_handlers=handlers,
        server_class=ThreadedAssociationServer,
        request_handler=WakingRequestHandler,
    )
    ae._servers.append(server)
    threading.Thread(target=server.serve_forever, name="scp-listener", daemon=True).start()
    return server


def serve(settings: Settings) -> None:
    """Run the SCP in the foreground until SIGINT or SIGTERM."""
    if log.getEffectiveLevel() > logging.DEBUG:
        # pynetdicom logs a line per DIMSE message (hundreds a second under load); the metrics
        # count instances and rejections, and rejections are logged here.
        logging.getLogger("pynetdicom._handlers").setLevel(logging.WARNING)
    if settings.scp_metrics_port:
        start_http_server(settings.scp_metrics_port, addr=settings.scp_host)
    publisher = EventPublisher(settings)
    publisher.start()
    store = InstanceStore(settings, LocalStorage(settings.storage_dir), publisher)
    server = start_server(build_ae(settings), settings, event_handlers(settings, store))
    log.info(
        "Storage SCP %s listening on %s:%d", settings.ae_title, settings.scp_host, settings.scp_port
    )
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    server.shutdown()
    publisher.stop()
    log.info("Storage SCP stopped")
