"""The storage interface: the only code that builds paths to DICOM and JSON files or opens them."""

import contextlib
import errno
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from dicomflow.core.identifiers import InvalidIdentifier, validate_tenant, validate_uid

UNKNOWN_STUDY_DATE = "00000000"
_STUDY_DATE = re.compile(r"^[0-9]{8}$")
# The names `writing` and `replacing` give their temporary files: `.{name}.{uuid4 hex}.tmp`.
_TEMPORARY_NAME = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)  # Linux only
T = TypeVar("T")


def _temporary_name(path: str | Path, write_id: str | None = None) -> str:
    """A name of its own beside `path`, for a file on its way in or out (`_TEMPORARY_NAME`);
    `write_id` (32 hex digits) names one write, so that others can see it in progress."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{write_id or uuid.uuid4().hex}.tmp")


@dataclass(frozen=True)
class SeriesLocation:
    """Where a series lives: tenant, study date folder, study and series UIDs, all validated."""

    tenant: str
    study_date: str
    study_uid: str
    series_uid: str

    def __post_init__(self) -> None:
        validate_tenant(self.tenant)
        if not _STUDY_DATE.match(self.study_date):
            raise InvalidIdentifier(f"study date folder {self.study_date!r} is not YYYYMMDD")
        validate_uid(self.study_uid, "Study Instance UID")
        validate_uid(self.series_uid, "Series Instance UID")

    @property
    def prefix(self) -> str:
        return f"{self.tenant}/{self.study_date}/{self.study_uid}/{self.series_uid}"

    def instance_key(self, sop_uid: str) -> str:
        """Key of one instance: `{tenant}/{study_date}/{study}/{series}/{sop}.dcm`."""
        return f"{self.prefix}/{validate_uid(sop_uid, 'SOP Instance UID')}.dcm"

    @property
    def metadata_key(self) -> str:
        """Key of the series metadata (DICOM JSON) under the JSON root."""
        return f"{self.prefix}.json"

    @property
    def parts_key(self) -> str:
        """Key of the series' parts file (each instance's DICOM JSON) under the JSON root."""
        return f"{self.prefix}.parts"

    @classmethod
    def of_instance_key(cls, key: str) -> "SeriesLocation":
        """The series location of an instance key made by `instance_key` (validated again)."""
        parts = key.split("/")
        if len(parts) != 5 or not parts[4].endswith(".dcm"):
            raise InvalidIdentifier(f"{key!r} is not an instance key")
        return cls(*parts[:4])


def study_date_folder(value: object) -> str:
    """The StudyDate as a YYYYMMDD folder name, or `00000000` when absent or malformed."""
    text = str(value or "").strip()
    return text if _STUDY_DATE.match(text) else UNKNOWN_STUDY_DATE


class LocalStorage:
    """Files under one root directory, written atomically and durably."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._prefix = os.path.join(self.root, "")

    def _path(self, key: str) -> Path:
        return Path(self._file_name(key))

    def _file_name(self, key: str) -> str:
        """The file of `key`; keys that would leave the root (`..`, absolute) are refused.

        Checked on the normalised text, without touching the disk: keys are made of validated
        identifiers, and this runs for every instance read or written.
        """
        path = os.path.normpath(os.path.join(self._prefix, key))
        if not path.startswith(self._prefix):
            raise InvalidIdentifier(f"storage key {key!r} leaves the storage root")
        return path

    def write_atomic(self, key: str, chunks: Iterable[bytes], durable: bool = True) -> int:
        """Write to a temporary file beside the target, fsync, rename over it; return the size.

        Not `durable`: no fsync (for data rebuilt from the DICOM files when lost); readers
        still see the old or the new content, never a mix, unless the machine crashes.
        """
        with self.writing(key, durable) as fh:
            for chunk in chunks:
                fh.write(chunk)
            return fh.tell()

    @contextlib.contextmanager
    def writing(
        self, key: str, durable: bool = True, write_id: str | None = None
    ) -> Iterator[BinaryIO]:
        """The block writes a temporary file beside the target; at its end the file is fsynced
        and renamed over the target (as `write_atomic`), or removed if the block raised.
        With a `write_id` (32 hex digits), `being_written` tells whether this write goes on."""
        path = self._path(key)
        tmp = Path(_temporary_name(path, write_id))
        try:
            with self._create(tmp) as fh:
                yield fh
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if durable:
            self._fsync_dir(path.parent)

    def being_written(self, key: str, write_id: str) -> bool:
        """Whether the write `write_id` of `key` is in progress (or a crash cut it short)."""
        return os.path.exists(_temporary_name(self._file_name(key), write_id))

    def append(self, key: str, data: bytes) -> None:
        """Append `data` to the file (made when missing) with one write, not fsynced: appends
        never run into each other; a reader may find the last one in part."""
        path = self._file_name(key)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = self._making_dirs(Path(path), lambda: os.open(path, flags, 0o644))
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(errno.ENOSPC, f"{written} of {len(data)} bytes appended to {key}")

    @contextlib.contextmanager
    def replacing(self, key: str) -> Iterator[None]:
        """Within the block `key` may be written; if the block raises, the file `key` held
        before is put back (durably), or, when it held none, the new one is removed.

        The file held before is kept under a second name meanwhile (a hard link: no copy).
        """
        path = self._file_name(key)
        previous: str | None = _temporary_name(path)
        try:
            os.link(path, previous)
        except (FileNotFoundError, NotADirectoryError):
            previous = None
        try:
            yield
        except BaseException:
            if previous is None:
                Path(path).unlink(missing_ok=True)
            else:
                os.replace(previous, path)
                self._fsync_dir(Path(path).parent)
            raise
        finally:
            if previous is not None:
                Path(previous).unlink(missing_ok=True)

    def remove_stale_temporary_files(self, older_than: float) -> tuple[int, int]:
        """Remove the temporary files `write_atomic` left behind a crash, if not modified for
        `older_than` seconds (a write in progress is younger); return (files, bytes).

        Walks the whole root: an operator's job (`dicomflow storage sweep`), not a start-up one.
        """
        deadline = time.time() - older_than
        removed = removed_bytes = 0
        for directory, _, names in os.walk(self.root):
            for name in names:
                if not _TEMPORARY_NAME.match(name):
                    continue
                path = os.path.join(directory, name)
                try:
                    status = os.stat(path)
                    if status.st_mtime > deadline:
                        continue
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                removed += 1
                removed_bytes += status.st_size
        return removed, removed_bytes

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def read_bytes(self, key: str) -> bytes:
        """The whole file, of less than 2 GiB, in one read: a third cheaper than a Python file
        object's (a series' metadata build reads one small file per instance)."""
        fd = os.open(self._file_name(key), os.O_RDONLY)
        try:
            return os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)

    def read_if_cached(self, key: str, limit: int) -> memoryview | None:
        """The whole file if it is at most `limit` bytes and all in the page cache, else None.

        The read never waits for the disk (RWF_NOWAIT), so an event loop may call this instead
        of paying a thread hop; the open() may still read a directory block, as nginx's does.
        """
        if _RWF_NOWAIT is None:
            return None
        fd = os.open(self._file_name(key), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            return pread_if_cached(fd, 0, size) if size <= limit else None
        finally:
            os.close(fd)

    def read_head_if_cached(self, key: str, size: int) -> tuple["FileIdentity", memoryview] | None:
        """The file's identity and first `size` bytes (all of a smaller file) if the page cache
        holds them, else None (also for a missing file). Never waits for the disk."""
        with self._descriptor_if_present(key) as fd:
            if fd is None:
                return None
            identity = FileIdentity.of(fd)
            head = pread_if_cached(fd, 0, min(size, identity.size))
            return None if head is None else (identity, head)

    def read_spans_if_cached(
        self, key: str, identity: "FileIdentity", spans: Iterable[tuple[int, int]]
    ) -> list[memoryview] | None:
        """The `(offset, size)` spans of the file, if it is still the file `identity` was taken
        from and they are all in the page cache; else None. Never waits for the disk."""
        with self._descriptor_if_present(key) as fd:
            if fd is None or FileIdentity.of(fd) != identity:
                return None
            read = []
            for offset, size in spans:
                data = pread_if_cached(fd, offset, size)
                if data is None:
                    return None
                read.append(data)
            return read

    @contextlib.contextmanager
    def _descriptor_if_present(self, key: str) -> Iterator[int | None]:
        """The file open for reading, None when it is missing or reads cannot skip the disk."""
        if _RWF_NOWAIT is None:
            yield None
            return
        try:
            fd = os.open(self._file_name(key), os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            yield fd
        finally:
            os.close(fd)

    def read_ahead(self, key: str) -> None:
        """Ask the kernel to read the file into the page cache, without waiting for the reads;
        pages it holds already cost nothing. A missing file is skipped."""
        try:
            fd = os.open(self._file_name(key), os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)

    def read_bytes_if_present(self, key: str) -> bytes | None:
        try:
            return self.read_bytes(key)
        except FileNotFoundError:
            return None

    def has_identical(self, key: str, data: bytes) -> bool:
        """True when `key` holds exactly `data` (sizes compared first)."""
        path = self._path(key)
        try:
            return path.stat().st_size == len(data) and path.read_bytes() == data
        except FileNotFoundError:
            return False

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def _create(self, path: Path) -> BinaryIO:
        """A new file open for writing."""
        return self._making_dirs(path, lambda: open(path, "wb"))

    def _making_dirs(self, path: Path, open_file: Callable[[], T]) -> T:
        """`open_file()` of `path`, its missing directories made only when the open says so (a
        series' directory exists after its first instance: no look first)."""
        try:
            return open_file()
        except FileNotFoundError:
            self._make_dirs(path.parent)
            return open_file()

    def _make_dirs(self, directory: Path) -> None:
        """Create missing directories and fsync each new entry's parent so it survives a crash."""
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for new_dir in reversed(missing):
            new_dir.mkdir(exist_ok=True)
            self._fsync_dir(new_dir.parent)

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class FileIdentity:
    """Which file a path named when it was opened: an atomic replacement is a new inode."""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, fd: int) -> "FileIdentity":
        status = os.fstat(fd)
        return cls(status.st_ino, status.st_size, status.st_mtime_ns)


def pread_if_cached(fd: int, offset: int, size: int) -> memoryview | None:
    """`size` bytes of open file `fd` from `offset` when all are in the page cache, else None:
    never waits for the disk (RWF_NOWAIT), so an event loop may call it."""
    if _RWF_NOWAIT is None:
        return None
    buffer = bytearray(size)
    try:
        read = os.preadv(fd, [buffer], offset, _RWF_NOWAIT)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno == errno.EOPNOTSUPP:  # a file system without non-blocking reads
            return None
        raise
    return memoryview(buffer) if read == size else None


def read_at_most(fh: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes from `fh`'s position, asking for no more than the file holds.

    Python allocates the whole `size` before reading: a 1 MiB read of a 0.5 MB file takes
    ~15 times as long (245 us) as a read of what is there (17 us).
    """
    position = fh.tell()
    end = fh.seek(0, os.SEEK_END)
    fh.seek(position)
    return fh.read(max(0, min(size, end - position)))
