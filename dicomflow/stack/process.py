"""Starting, finding and stopping the local service processes the stack owns."""

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class StackError(RuntimeError):
    """A local service could not be installed, started or reached."""


def run(command: Sequence[str], *, user: str | None = None, **kwargs: object) -> str:
    """Run a command to completion (as `user` when we are root); raise StackError on failure."""
    full = [*as_user(user), *command]
    result = subprocess.run(full, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise StackError(f"{' '.join(full)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def as_user(user: str | None) -> list[str]:
    """The prefix that drops root privileges to `user` (servers that refuse to run as root)."""
    if user is None or os.geteuid() != 0:
        return []
    return ["runuser", "-u", user, "--"]


def chown_for(path: Path, user: str | None) -> None:
    if user is None or os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


def spawn(
    command: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Start a long-running server detached from our session; record its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            [*as_user(user), *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(process.pid))
    return process.pid


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` if that process is still alive."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def terminate(pid_file: Path, timeout: float = 30.0) -> bool:
    """SIGTERM the process group recorded in `pid_file`, then SIGKILL after `timeout`."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    if not wait_until(lambda: read_pid(pid_file) is None, timeout):
        _signal_group(pid, signal.SIGKILL)
        wait_until(lambda: read_pid(pid_file) is None, 5)
    pid_file.unlink(missing_ok=True)
    return True


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), signum)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
