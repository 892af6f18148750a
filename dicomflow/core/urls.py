"""The canonical DICOMweb URLs of stored objects (tenant-qualified, relative to the server)."""

DICOMWEB_PREFIX = "/dicom-web"


def tenant_base(tenant: str) -> str:
    return f"/tenants/{tenant}{DICOMWEB_PREFIX}"


def study_url(tenant: str, study_uid: str) -> str:
    return f"{tenant_base(tenant)}/studies/{study_uid}"


def series_url(tenant: str, study_uid: str, series_uid: str) -> str:
    return f"{study_url(tenant, study_uid)}/series/{series_uid}"


def instance_url(tenant: str, study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"{series_url(tenant, study_uid, series_uid)}/instances/{sop_uid}"
