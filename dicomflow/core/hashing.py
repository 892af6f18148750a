"""Stable 64-bit hashes of UIDs, written as 20-digit zero-padded decimals (varchar(20))."""

from hashlib import blake2b


def uid_hash(uid: str) -> str:
    digest = blake2b(uid.encode("ascii"), digest_size=8).digest()
    return f"{int.from_bytes(digest, 'big'):020d}"
