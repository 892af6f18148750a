"""Validation of every identifier that may become part of a path, a key or a query."""

import re

UID_MAX_LENGTH = 64
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


class InvalidIdentifier(ValueError):
    """An identifier from the outside that is not well formed."""


def is_valid_uid(value: object) -> bool:
    """True for a DICOM UID: digits and dots, no empty or zero-padded component, <= 64 chars."""
    return isinstance(value, str) and 0 < len(value) <= UID_MAX_LENGTH and bool(_UID.match(value))


def validate_uid(value: object, name: str = "UID") -> str:
    if not is_valid_uid(value):
        raise InvalidIdentifier(f"{name} is not a valid DICOM UID: {value!r}")
    return str(value)


def validate_tenant(value: object) -> str:
    """Tenants are short lower-case identifiers, safe as a path component and a key."""
    if not isinstance(value, str) or not _TENANT.match(value):
        raise InvalidIdentifier(
            f"tenant {value!r} must be 1-32 characters of a-z, 0-9, '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def validate_ae_title(value: object) -> str:
    """AE titles: 1-16 printable ASCII characters without backslash, stripped of spaces."""
    title = value.strip() if isinstance(value, str) else value
    if not isinstance(title, str) or not _AE_TITLE.match(title):
        raise InvalidIdentifier(f"AE title {value!r} is not 1-16 printable ASCII characters")
    return title
