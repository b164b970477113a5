"""Crash-safe files of a run: atomic writes and a lock that a dead process does not leave stuck.

Every artifact is written to a temporary name in its own directory and renamed over the final
name (`os.replace` is atomic on POSIX and Windows), so a reader, or a run killed mid-write,
only ever sees the previous complete file or the new complete file.
"""
import contextlib
import json
import os
import socket
import time
import uuid


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path next to `path`; renames it to `path` if the block succeeds.

    The temporary name keeps `path`'s suffix (Keras checks `.keras` / `.weights.h5`). It is
    removed if the block raises, so a failed write leaves the previous file untouched.
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    temporary = os.path.join(directory, f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{suffix}")
    try:
        yield temporary
        _fsync_file(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _fsync_file(path):
    # The rename must not reach the disk before the data it names.
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def atomic_write_bytes(path, data):
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, data):
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_write_png(path, array):
    """Writes a uint8 `(H, W)` or `(H, W, C)` array as a PNG file, atomically."""
    import cv2
    import numpy as np

    array = np.asarray(array, np.uint8)
    if array.ndim == 3 and array.shape[-1] == 3:
        array = array[..., ::-1]  # OpenCV writes BGR
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise ValueError(f"{path}: cannot encode a {array.shape} array as PNG")
    atomic_write_bytes(path, encoded.tobytes())


def save_model_atomically(model, path):
    """`model.save(path)` through a temporary `.keras` file and a rename."""
    with atomic_path(path) as temporary:
        model.save(temporary)


def read_json(path, default=None):
    """The JSON content of `path`, or `default` if it does not exist or is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return default


def _process_start_time(pid):
    """Start time of `pid` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    # Field 22; the command name (field 2) is parenthesised and may contain spaces.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class OutputLockedError(RuntimeError):
    """Another live process holds the lock of an output directory."""


class RunLock:
    """An exclusive lock file in a directory, holding the owner's pid, host and start time.

    `acquire()` creates the file with `O_EXCL`. If it exists and its owner (same host) is no
    longer running, or its pid now belongs to a process started at another time, the lock is
    stale: it is removed and taken over. A lock of another host cannot be checked and is
    respected; the error message says which file to delete if that host's run is gone.

    Use as a context manager, or call `acquire()` / `release()`.
    """

    FILE_NAME = ".reseg.lock"

    def __init__(self, directory, purpose="reseg train"):
        self.path = os.path.join(os.fspath(directory), self.FILE_NAME)
        self.purpose = purpose
        self.owned = False
        self.took_over_from = None

    def _owner_record(self):
        pid = os.getpid()
        return {"pid": pid, "host": socket.gethostname(), "start_time": _process_start_time(pid),
                "purpose": self.purpose}

    def _is_stale(self, record):
        if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
            return True  # unreadable or half-written lock: its writer died while creating it
        if record.get("host") != socket.gethostname():
            return False
        pid = record["pid"]
        if not _process_alive(pid):
            return True
        recorded_start = record.get("start_time")
        current_start = _process_start_time(pid)
        return recorded_start is not None and current_start is not None and recorded_start != current_start

    def acquire(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(3):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                record = read_json(self.path)
                if record is None and os.path.exists(self.path) and _recently_modified(self.path):
                    time.sleep(0.5)  # its owner is still writing it
                    continue
                if self._is_stale(record):
                    self.took_over_from = record
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.path)
                    continue
                directory = os.path.dirname(self.path)
                raise OutputLockedError(
                    f"{directory} is in use by another {record.get('purpose', 'process')} "
                    f"(pid {record['pid']} on {record.get('host')}); wait for it to finish or "
                    f"choose another --output. If that process is gone, delete {self.path}."
                ) from None
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(self._owner_record(), handle)
            self.owned = True
            return self
        raise OutputLockedError(f"could not take the lock {self.path}; another process keeps changing it.")

    def release(self):
        if self.owned:
            record = read_json(self.path)
            if isinstance(record, dict) and record.get("pid") == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
            self.owned = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


def _recently_modified(path, seconds=2.0):
    try:
        return time.time() - os.path.getmtime(path) < seconds
    except OSError:
        return False
