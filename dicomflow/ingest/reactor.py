"""Acceptor associations whose two reactor threads wake on events instead of polling.

pynetdicom's DUL and association reactors sleep 1 ms whenever they find nothing to do (its
own TODO says to make them event based): each open association, idle or not, wakes its two
threads a thousand times a second, and a C-STORE waits in those sleeps on its way in and out.
Here the DUL thread blocks on its socket and on a wake-up socket that `send_pdu` writes to,
and the association thread on an event the DUL sets after each action of its state machine;
both look at their timers every `TIMER_CHECK_INTERVAL`. The loops do what pynetdicom 3.0.4's
do (the version pinned), without the sleeps.
"""

import contextlib
import logging
import queue
import select
import socket
import threading
from typing import cast

from pynetdicom import evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.ae import ApplicationEntity
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import A_ABORT, A_ASSOCIATE, A_P_ABORT, A_RELEASE, P_DATA
from pynetdicom.transport import AssociationSocket, RequestHandler

from dicomflow.ingest.store_response import DirectStoreResponses

log = logging.getLogger(__name__)

TIMER_CHECK_INTERVAL = 0.05
"""Longest a reactor blocks: the ARTIM and network idle timers are looked at this often."""

PDUPrimitive = A_ASSOCIATE | A_RELEASE | A_ABORT | A_P_ABORT | P_DATA


class WakingDUL(DULServiceProvider):
    """A DUL reactor that blocks until its socket is readable or a primitive is queued."""

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        self.activity = threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)

    def send_pdu(self, primitive: PDUPrimitive) -> None:
        super().send_pdu(primitive)
        self._wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def stop_dul(self) -> bool:
        if self.state_machine.current_state != "Sta1":
            return False
        self._kill_thread = True
        self._wake()
        self.join()
        return True

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a wake-up is pending already, or the DUL ended
            self._wake_writer.send(b"\0")

    def _wait_for_input(self) -> None:
        watched: list[socket.socket] = [self._wake_reader]
        peer = cast(AssociationSocket, self.socket).socket
        if peer is not None and peer.fileno() != -1:
            watched.append(peer)
        try:
            select.select(watched, [], [], TIMER_CHECK_INTERVAL)
        except (OSError, ValueError):
            return  # the peer socket closed meanwhile: the next transport check says so
        try:
            while self._wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass

    def run_reactor(self) -> None:
        try:
            self._run_reactor()
        finally:
            self.activity.set()
            self._wake_writer.close()
            self._wake_reader.close()

    def _run_reactor(self) -> None:
        self._idle_timer.start()
        self.assoc._dul_ready.set()
        idle = False
        while True:
            if idle:
                self._wait_for_input()
            if self._kill_thread:
                return
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:  # a primitive to send first, else the peer's data, one per loop
                if not self._process_recv_primitive() and self._is_transport_event():
                    self._idle_timer.restart()
            except Exception:
                log.exception("Exception in the DUL reactor, aborting the association")
                self._abort_at_once()
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                idle = True
                continue
            self.state_machine.do_action(event)
            self.activity.set()
            idle = False

    def _abort_at_once(self) -> None:
        """Send an A-ABORT past the state machine, which an exception may have left broken."""
        abort = A_ABORT_RQ()
        abort.source = 0x02
        abort.reason_diagnostic = 0x00
        cast(AssociationSocket, self.socket).send(abort.encode())
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True


class WakingAssociation(Association):
    """An acceptor association served by a `WakingDUL` and a reactor that waits on it."""

    def __init__(self, ae: ApplicationEntity, mode: str) -> None:
        super().__init__(ae, mode)
        self.dul: WakingDUL = WakingDUL(self)
        self.dimse = DirectStoreResponses(self)
        # The timeouts were given to the replaced DUL's timers: give them to this one's
        self.acse_timeout = self.acse_timeout
        self.network_timeout = self.network_timeout

    def _run_reactor(self) -> None:
        self._is_paused = False
        while not self._kill:
            if self.dimse.msg_queue.empty():
                self.dul.activity.wait(TIMER_CHECK_INTERVAL)
            self.dul.activity.clear()
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, cast(int, context_id))
            if self._ended():
                return

    def _ended(self) -> bool:
        """Whether the association is over (released, aborted, its DUL gone, or idle past the
        network timeout), answered and killed as pynetdicom's reactor does."""
        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            log.info("Association released")
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return True
        if self.acse.is_aborted():
            log.info("Association aborted")
            self.dul.receive_pdu(wait=False)
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if not self.dul.is_alive():
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            log.error("Network timeout reached")
            self.abort()
            self.kill()
            return True
        return False


class WakingRequestHandler(RequestHandler):
    """pynetdicom's request handler, making a `WakingAssociation` for each connection."""

    def _create_association(self) -> Association:
        assoc = WakingAssociation(self.ae, MODE_ACCEPTOR)
        assoc._server = self.server
        # pynetdicom finds a server's associations (and counts them against the maximum) by
        # this name
        assoc.name = f"AcceptorThread@{self.client_address[0]}:{self.client_address[1]}"
        assoc.set_socket(AssociationSocket(assoc, client_socket=self.request))
        acceptor = assoc.acceptor
        acceptor.maximum_length = self.ae.maximum_pdu_size
        acceptor.ae_title = self.server.ae_title
        acceptor.address_info = self.local
        acceptor.implementation_class_uid = self.ae.implementation_class_uid
        acceptor.implementation_version_name = self.ae.implementation_version_name
        # Shared, not deep-copied as pynetdicom does (27 ms of CPU per association for ours):
        # negotiation only reads them, and no handler of ours changes them.
        acceptor.supported_contexts = list(self.server.contexts)
        assoc.requestor.address_info = self.remote
        for event, handlers in self.server._handlers.items():
            if event.is_intervention and handlers:
                assoc.bind(event, *handlers)
            elif isinstance(event, evt.NotificationEvent):
                for handler, args in handlers:
                    assoc.bind(event, handler, args)
        return assoc
