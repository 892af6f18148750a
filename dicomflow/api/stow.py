"""STOW-RS body parts (PS3.18 10.5), without HTTP types: each part is spooled to an unnamed
temporary file, then checked and stored through the same InstanceStore as C-STORE.

Parts are stored one at a time, in a worker thread, as soon as each is complete. Spool files
have no name (O_TMPFILE or unlinked at once), so nothing is left behind, even after a crash.
"""

import asyncio
import logging
import tempfile
from dataclasses import dataclass, replace
from typing import BinaryIO

from pydicom import dcmread
from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AllStoragePresentationContexts

from dicomflow.api.multipart import MultipartError, PartSink, parse_content_type
from dicomflow.core.identifiers import is_valid_uid
from dicomflow.core.metrics import REJECTIONS
from dicomflow.core.settings import Settings
from dicomflow.ingest.store import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    OUT_OF_RESOURCES,
    InstanceStore,
    Origin,
    Rejected,
)

log = logging.getLogger(__name__)

DICOM = "application/dicom"
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
# What the Storage SCP accepts, so that both ways in take the same instances.
STORAGE_SOP_CLASSES = frozenset(
    context.abstract_syntax for context in AllStoragePresentationContexts
)
TRANSFER_SYNTAXES = frozenset(AllTransferSyntaxes)
SPOOL_BUFFER = 1 << 20
PART10_PREFIX = bytes(128) + b"DICM"
META_GROUP = b"\x02\x00"
_IDENTIFYING = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"]


@dataclass(frozen=True)
class Outcome:
    """One body part: stored when `failure` is None, else its FailureReason; UIDs when known."""

    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    failure: int | None = None
    comment: str = ""


class StowTransaction:
    """The body parts of one request, stored in order; `outcomes` says what became of each."""

    def __init__(
        self, store: InstanceStore, origin: Origin, settings: Settings, study_uid: str | None
    ) -> None:
        self.outcomes: list[Outcome] = []
        self.max_part_bytes = settings.stow_max_part_bytes
        self._store = store
        self._origin = origin
        self._spool_dir = settings.stow_spool_dir
        self._study_uid = study_uid

    @property
    def stored(self) -> int:
        return sum(outcome.failure is None for outcome in self.outcomes)

    async def open_part(self, headers: dict[str, str]) -> PartSink:
        """The sink of the next body part (the `on_part` of `iter_parts`)."""
        reason = _unsupported(headers.get("content-type"))
        if reason:
            return FailedPart(self, self.reject(Outcome(), CANNOT_UNDERSTAND, "bad_part", reason))
        try:
            spool = await asyncio.to_thread(tempfile.TemporaryFile, dir=self._spool_dir)
        except OSError as exc:
            failure = self.reject(Outcome(), OUT_OF_RESOURCES, "spool_failed", str(exc))
            return FailedPart(self, failure)
        return SpooledPart(self, spool)

    def reject(self, known: Outcome, status: int, reason: str, comment: str) -> Outcome:
        """A failure found here, counted and logged as InstanceStore does its own."""
        REJECTIONS.labels(reason).inc()
        log.info("rejected a STOW-RS part from %s: %s", self._origin.source_ip, comment)
        return replace(known, failure=status, comment=comment)

    def store_spooled(self, spool: BinaryIO) -> Outcome:
        """Check and store one spooled part, then close it (blocking: runs in a thread)."""
        with spool:
            known, syntax = _identify(spool)
            if failure := self._precheck(known, syntax):
                return failure
            try:
                event = self._store.store(spool, self._origin)
            except Rejected as exc:
                return replace(known, failure=exc.status, comment=exc.comment)
            except Exception as exc:  # a bug fails this part, never the parts stored already
                log.exception("storing a STOW-RS part failed")
                return replace(known, failure=PROCESSING_FAILURE, comment=str(exc))
        return Outcome(event.sop_class_uid, event.sop_uid, event.study_uid, event.series_uid)

    def _precheck(self, known: Outcome, syntax: str | None) -> Outcome | None:
        """What the SCP's presentation contexts, or the request's study, would refuse."""
        if syntax is not None and syntax not in TRANSFER_SYNTAXES:
            comment = f"transfer syntax {syntax} is not supported"
            return self.reject(known, TRANSFER_SYNTAX_NOT_SUPPORTED, "syntax_unsupported", comment)
        if known.sop_class_uid is not None and known.sop_class_uid not in STORAGE_SOP_CLASSES:
            comment = f"SOP Class UID {known.sop_class_uid} is not a storage SOP class"
            return self.reject(known, SOP_CLASS_NOT_SUPPORTED, "sop_class_unsupported", comment)
        expected = self._study_uid
        if expected is not None and known.study_uid not in (None, expected):
            comment = f"Study Instance UID {known.study_uid} is not the request's {expected}"
            return self.reject(known, DATASET_MISMATCH, "study_mismatch", comment)
        return None


class FailedPart:
    """A part that cannot be stored: its bytes are dropped, its failure recorded at its end."""

    def __init__(self, transaction: StowTransaction, failure: Outcome) -> None:
        self._transaction = transaction
        self._failure = failure

    async def write(self, data: bytes) -> None:
        pass

    async def close(self) -> None:
        self._transaction.outcomes.append(self._failure)

    async def abort(self) -> None:
        pass


class SpooledPart:
    """A part written to its spool file in large blocks, stored when it is complete."""

    def __init__(self, transaction: StowTransaction, spool: BinaryIO) -> None:
        self._transaction = transaction
        self._spool = spool
        self._buffer = bytearray()
        self._size = 0
        self._failure: Outcome | None = None
        self._handed_over = False
        self._started = False

    async def write(self, data: bytes) -> None:
        if self._failure is not None:
            return
        self._size += len(data)
        if self._size > self._transaction.max_part_bytes:
            limit = self._transaction.max_part_bytes
            await self._drop("part_too_large", f"body part larger than {limit} bytes")
            return
        self._buffer += data
        if len(self._buffer) >= SPOOL_BUFFER:
            await self._flush()

    async def close(self) -> None:
        await self._flush()
        if self._failure is None:
            self._handed_over = True  # from here on, the worker thread closes the spool
            outcome = await asyncio.to_thread(self._transaction.store_spooled, self._spool)
        else:
            outcome = self._failure
        self._transaction.outcomes.append(outcome)

    async def abort(self) -> None:
        if not self._handed_over:
            self._buffer = bytearray()
            await asyncio.to_thread(self._spool.close)

    async def _flush(self) -> None:
        if self._failure is not None or not self._buffer:
            return
        if not self._started:
            self._started = True
            self._buffer = _with_prefix(self._buffer)
        try:
            await asyncio.to_thread(self._spool.write, self._buffer)
        except OSError as exc:
            await self._drop("spool_failed", f"cannot spool the part: {exc}")
            return
        self._buffer = bytearray()

    async def _drop(self, reason: str, comment: str) -> None:
        """Fail the part (A700): free its spool now and ignore the rest of its bytes."""
        self._failure = self._transaction.reject(Outcome(), OUT_OF_RESOURCES, reason, comment)
        self._buffer = bytearray()
        await asyncio.to_thread(self._spool.close)


def _with_prefix(head: bytearray) -> bytearray:
    """The head of a part that opens with its file meta group, as pydicom writes a Dataset
    without a preamble (dicomweb-client does), gets the PS3.10 preamble and prefix."""
    if head[128:132] != b"DICM" and head.startswith(META_GROUP):
        return bytearray(PART10_PREFIX) + head
    return head


def _unsupported(content_type: str | None) -> str | None:
    """Why a part's Content-Type is not a DICOM instance (absent: application/dicom)."""
    if content_type is None:
        return None
    try:
        media_type, _ = parse_content_type(content_type)
    except MultipartError as exc:
        return str(exc)
    return None if media_type == DICOM else f"a part of type {media_type} is not {DICOM}"


def _identify(spool: BinaryIO) -> tuple[Outcome, str | None]:
    """The UIDs of a part that can be read (SOP Class, SOP Instance, Study) and its transfer
    syntax; nothing for a part that cannot be parsed, which the store rejects with a reason."""
    try:
        spool.seek(0)
        ds = dcmread(spool, stop_before_pixels=True, specific_tags=_IDENTIFYING)
    except Exception:  # any parse failure: InstanceStore parses again and names it
        return Outcome(), None
    known = Outcome(
        sop_class_uid=_uid(ds.get("SOPClassUID")),
        sop_instance_uid=_uid(ds.get("SOPInstanceUID")),
        study_uid=_uid(ds.get("StudyInstanceUID")),
    )
    syntax = ds.file_meta.get("TransferSyntaxUID")
    return known, None if syntax is None else str(syntax)


def _uid(value: object) -> str | None:
    return str(value) if is_valid_uid(value) else None
