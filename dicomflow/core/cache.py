"""The Redis keys the stream jobs refresh and the API reads."""

SERIES_METADATA_TTL = 7 * 24 * 3600
STUDY_SERIES_TTL = 24 * 3600


def series_metadata_key(tenant: str, study_uid: str, series_uid: str) -> str:
    return f"dicomflow:series-metadata:{tenant}:{study_uid}:{series_uid}"


def study_series_key(tenant: str, study_uid: str) -> str:
    return f"dicomflow:study-series:{tenant}:{study_uid}"
