"""File formats: JSONL records, atomic writes, safe loading of .npy arrays.

Every artifact of the workflow is read and written through this module so that errors name the file
(and line) and a half-written file never looks finished. A write that fails for want of space or
permission raises `WriteError`, whose message names the output and the cause, and leaves no temporary
file behind.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

Record = dict[str, Any]
UMASK = os.umask(0o022)
os.umask(UMASK)


class DataError(ValueError):
    """Bad input data, with the file (and line) it came from in the message."""


class WriteError(OSError):
    """An output could not be written: `str()` names the output and the cause (errno, strerror, filename as OSError)."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}  # failures only a write can have


def write_error(path: Path, err: BaseException, location: bool) -> WriteError | None:
    """`err` as a WriteError naming `path`, or None when it is not a failure to write there.

    `location`: `err` came from creating or renaming files at `path` (every OSError counts); otherwise it came
    from the caller's block writing the temporary copy, where only a full disk or another write-only errno
    counts. Writers that are not Python's report these in their own ways: Rust's "(os error 28)" (safetensors,
    tokenizers), or an error without errno (NumPy's short write, torch.save's "file write failed") when the file
    system has no space left.
    """
    if isinstance(err, WriteError):
        return err
    folder = existing_folder(path)
    code = err.errno if isinstance(err, OSError) else None
    if code is None:
        match = re.search(r"\(os error (\d+)\)", str(err))
        code = int(match[1]) if match else None
    if code is None and no_space_left(folder):
        code = errno.ENOSPC
    if code is None or not (location or code in WRITE_ERRNOS):
        return None
    cause = os.strerror(code)
    if code in (errno.ENOSPC, errno.EDQUOT):
        cause += f" (the file system of {folder} is full)"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause += f" ({folder} is not writable by this process)"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            code, cause = errno.ENOTDIR, f"{blocker} is a file, not a directory"
    elif code == errno.EFBIG:
        cause += " (beyond the file system's or the process's file-size limit)"
    return WriteError(code, cause, str(path))


def existing_folder(path: Path) -> Path:
    """The nearest folder above `path` that exists (where `path` would be created)."""
    return next((p for p in path.parents if p.exists()), Path("/"))


def no_space_left(folder: Path) -> bool:
    """Whether the file system of `folder` has no block left for this process."""
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def failed_write(err: BaseException, paths: Sequence[Path]) -> WriteError | None:
    """`err`, raised by a step whose outputs and work folders are `paths`, as a failure to write one of them, or
    None when it is not a failure to write. A safety net for the writes no `writing` block names (a Trainer's
    checkpoints, an appended shard): the first of `paths` on a file system with no space left, else the first."""
    if not paths:
        return None
    full = [path for path in paths if no_space_left(existing_folder(path))]
    return write_error((full or paths)[0], err, location=False)


@contextlib.contextmanager
def writing(path: Path, location: bool = True) -> Iterator[None]:
    """Turn a failure to write `path` into a WriteError naming it (see `write_error`); other errors pass."""
    try:
        yield
    except Exception as err:
        translated = write_error(path, err, location)
        if translated is None or translated is err:
            raise
        raise translated from err


def read_jsonl(path: str | os.PathLike, required: Sequence[str] = ()) -> list[Record]:
    """Read a JSONL file; every line must be a JSON object holding the `required` keys."""
    return list(iter_jsonl(path, required))


def iter_jsonl(path: str | os.PathLike, required: Sequence[str] = ()) -> Iterator[Record]:
    """Yield the records of a JSONL file, failing with `file:line: reason` on the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{lineno}: not UTF-8 ({err.reason} at byte {err.start})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as err:
                reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err) or type(err).__name__
                raise DataError(f"{path}:{lineno}: malformed JSON ({reason})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            missing = [key for key in required if key not in record]
            if missing:
                raise DataError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
            yield record


def complete_records(path: str | os.PathLike, required: Sequence[str] = ()) -> list[Record]:
    """The records a killed writer left intact: everything before the first cut or malformed line."""
    records = []
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                record = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError):
                break
            if not isinstance(record, dict) or any(key not in record for key in required):
                break
            records.append(record)
    return records


def dumps(record: Record) -> str:
    """One JSONL line (without the newline), with a stable key order."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


def temporary(path: Path) -> tuple[str, str]:
    """The `tempfile` prefix and suffix of the temporaries that `atomic_path` and `atomic_dir` write beside `path`."""
    return f".{path.name}.", ".tmp"


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries a killed writer of `path` left beside it (files or folders named as `atomic_path`
    and `atomic_dir` name them); returns what was removed. Only the job that owns `path` may call this."""
    path = Path(path)
    prefix, suffix = temporary(path)
    pattern = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}" + re.escape(suffix))  # tempfile's random names
    stale = [item for item in sorted(path.parent.glob(glob.escape(prefix) + "*" + suffix))
             if pattern.fullmatch(item.name)]
    for item in stale:
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it is renamed to `path` only if the block succeeds."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = temporary(path)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with writing(path):
            tmp_path.chmod(0o666 & ~UMASK)  # mkstemp makes 0600; artifacts get the usual permissions
        with writing(path, location=False):
            yield tmp_path
        with writing(path):
            os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = temporary(path)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=path.parent))
    try:
        with writing(path):
            tmp.chmod(0o777 & ~UMASK)
        with writing(path, location=False):
            yield tmp
        with writing(path):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def link_dir(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make `path` an atomic copy of the folder `source`, hard-linking its files where the file system allows
    (no extra space; each copy survives the deletion of the other)."""
    source = Path(source)
    with atomic_dir(path) as tmp:
        for item in sorted(source.rglob("*")):
            target = tmp / item.relative_to(source)
            if item.is_dir():
                target.mkdir()
                continue
            try:
                os.link(item, target)
            except OSError:  # another file system, or no hard links there
                shutil.copy2(item, target)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside `path` that replaces `path` when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_jsonl(path: str | os.PathLike, records: Iterable[Record]) -> int:
    """Write records atomically; returns how many were written."""
    n = 0
    with atomic_open(path) as f:
        for record in records:
            f.write(dumps(record) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write an indented JSON document atomically."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def read_npy(path: str | os.PathLike, mmap_mode: str | None = None) -> Any:
    """A .npy array (never pickled objects), memory-mapped if `mmap_mode`; errors name the file."""
    import numpy as np

    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npy array ({err})") from None


def write_npz(path: str | os.PathLike, arrays: dict[str, Any]) -> None:
    """Write named arrays as an uncompressed .npz atomically (numbers and fixed-width strings: no pickles)."""
    import numpy as np

    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def read_npz(path: str | os.PathLike, keys: Sequence[str], what: str = "npz") -> dict[str, Any]:
    """The arrays `keys` of an .npz archive (never pickled objects); errors name the file and the missing keys."""
    import zipfile

    import numpy as np

    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable {what} ({err})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected an .npz archive ({what}), got a single array")
    with data:
        missing = [key for key in keys if key not in data.files]
        if missing:
            raise DataError(f"{path}: missing {what} key(s) {', '.join(missing)}")
        try:
            return {key: data[key] for key in keys}
        except (ValueError, zipfile.BadZipFile) as err:
            raise DataError(f"{path}: not a readable {what} ({err})") from None


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON document; errors name the file (and line)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
    except (ValueError, RecursionError) as err:
        raise DataError(f"{path}: malformed JSON ({err or type(err).__name__})") from None
