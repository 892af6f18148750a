"""The Store Instances Response Module (PS3.18 Annex I) and the HTTP status of a STOW-RS reply."""

from collections.abc import Sequence

from pydicom.dataset import Dataset

from dicomflow.api.stow import Outcome

OK, ACCEPTED, CONFLICT = 200, 202, 409


def response_module(outcomes: Sequence[Outcome], base: str) -> Dataset:
    """RetrieveURL (the study, when all stored instances share one), ReferencedSOPSequence and
    FailedSOPSequence; URLs start with `base` (the DICOMweb root of the request)."""
    stored = [outcome for outcome in outcomes if outcome.failure is None]
    failed = [outcome for outcome in outcomes if outcome.failure is not None]
    studies = {outcome.study_uid for outcome in stored}
    ds = Dataset()
    ds.RetrieveURL = f"{base}/studies/{studies.pop()}" if len(studies) == 1 else ""
    if failed:
        ds.FailedSOPSequence = [_failed_item(outcome) for outcome in failed]
    if stored:
        ds.ReferencedSOPSequence = [_referenced_item(outcome, base) for outcome in stored]
    return ds


def http_status(outcomes: Sequence[Outcome]) -> int:
    """200 when every part was stored, 202 when some were, 409 when none was."""
    stored = sum(outcome.failure is None for outcome in outcomes)
    if not stored:
        return CONFLICT
    return OK if stored == len(outcomes) else ACCEPTED


def _referenced_item(outcome: Outcome, base: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = outcome.sop_class_uid
    item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
    item.RetrieveURL = (
        f"{base}/studies/{outcome.study_uid}/series/{outcome.series_uid}"
        f"/instances/{outcome.sop_instance_uid}"
    )
    return item


def _failed_item(outcome: Outcome) -> Dataset:
    item = Dataset()
    if outcome.sop_class_uid is not None:
        item.ReferencedSOPClassUID = outcome.sop_class_uid
    if outcome.sop_instance_uid is not None:
        item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
    item.FailureReason = outcome.failure
    return item
