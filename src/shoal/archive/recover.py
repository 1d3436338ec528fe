"""Recovering the WARC files a killed writer left open.

A writer that dies leaves its ``*.warc.gz.open`` file behind, possibly with a
partial exchange at its tail. :func:`orphaned_files` recognises such files by
the pid and host in their names; :func:`recover` cuts each one back to its
longest prefix of whole records and gives it its final name, so every
:class:`~shoal.archive.names.WarcRef` into that prefix stays valid.

Recovery is safe to run from several processes at once (two workers starting
together after a crash): a recoverer first claims a file by renaming it
atomically to a name of its own (``….open.recovering-{pid}-{random}``), so
exactly one process works on each file and the others skip it. A claim whose
holder died is taken over the same way.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path

from shoal.archive.names import FINAL_SUFFIX, OPEN_SUFFIX, final_name, host_tag, parse_name
from shoal.archive.records import MAX_RECORD_BYTES
from shoal.archive.scan import scan
from shoal.archive.writer import fsync_dir
from shoal.errors import ArchiveError

__all__ = ["orphaned_files", "recover"]

_CLAIM = ".recovering-"
"""Infix of a file being recovered: ``{name}.open.recovering-{pid}-{random}``."""


def _pid_alive(pid: int, started: float) -> bool:
    """Whether process ``pid`` on this host may still be the one that began something at ``started``."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        # A process younger than the file reuses the pid of the dead one.
        return bool(proc.create_time() <= started + 1.0)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell (access denied): leave the file alone


def orphaned_files(directory: str | os.PathLike[str]) -> list[str]:
    """Names of ``*.warc.gz.open`` files in ``directory`` whose writer is dead.

    A file is an orphan when its name carries this host and a pid that is not
    running (or was reused by a process younger than the file). Files of other
    hosts and names in another format are never reported: only their own host
    can tell whether their writer lives. Returns ``.open`` names, sorted.
    """
    host = host_tag()
    found: list[str] = []
    for path in Path(directory).glob(f"*{FINAL_SUFFIX}{OPEN_SUFFIX}"):
        parts = parse_name(path.name)
        if parts is None or parts.host != host:
            continue
        if not _pid_alive(parts.pid, parts.started):
            found.append(path.name)
    return sorted(found)


def _stale_claims(directory: Path, name: str | None) -> list[Path]:
    """Claims (on ``name``, or on any file) whose recoverer died before finishing."""
    pattern = f"{name or '*'}{OPEN_SUFFIX}{_CLAIM}*"
    stale: list[Path] = []
    for path in directory.glob(pattern):
        _, _, tail = path.name.rpartition(_CLAIM)
        pid, _, rest = tail.partition("-")
        started, _, _ = rest.partition("-")
        if not (pid.isdigit() and started.isdigit()):
            continue
        base = path.name[: path.name.rindex(_CLAIM)]
        parts = parse_name(base)
        if parts is not None and parts.host != host_tag():
            continue
        if not _pid_alive(int(pid), int(started) / 1000):
            stale.append(path)
    return stale


def _claim(directory: Path, sources: list[Path], name: str) -> Path | None:
    """Rename the first source that still exists to a claim of our own; None when none is left."""
    mine = directory / (
        f"{name}{OPEN_SUFFIX}{_CLAIM}{os.getpid()}-{int(time.time() * 1000)}-{secrets.token_hex(4)}"
    )
    for source in sources:
        try:
            os.rename(source, mine)  # atomic: of two recoverers only one finds the source
        except FileNotFoundError:
            continue  # another recoverer took it, or it was already closed
        except OSError as exc:
            raise ArchiveError(f"cannot recover {source}: {exc}", errno=exc.errno) from exc
        return mine
    return None


def _good_prefix(path: Path) -> int:
    """Bytes at the start of ``path`` that hold whole, well-formed records."""
    good = 0
    try:
        for offset, length, _ in scan(
            path, strict=False, verify=False, max_record=MAX_RECORD_BYTES
        ):
            good = offset + length
    except ArchiveError:
        pass
    return good


def recover(directory: str | os.PathLike[str], only: Iterable[str] | None = None) -> list[str]:
    """Close ``.open`` files left by killed writers: cut the broken tail, rename to the final name.

    ``only`` names the files to recover (``.open`` or final names, relative to
    ``directory``); the caller must know that no live writer holds them. By
    default the files :func:`orphaned_files` reports are recovered, and files
    whose recoverer died half-way. Each file keeps its longest prefix of whole
    records, so every ref into that part stays valid; a file without a single
    whole record is deleted. Returns the final names of the files this call
    recovered: a file another process is recovering at the same moment is
    left to it and not listed. Raises :class:`~shoal.errors.ArchiveError`
    (with the ``errno`` behind it) when a file cannot be cut or renamed, or
    its final name is already taken.
    """
    directory = Path(directory)
    if only is None:
        names = {final_name(n) for n in orphaned_files(directory)}
        for stale in _stale_claims(directory, None):
            names.add(stale.name[: stale.name.rindex(_CLAIM) - len(OPEN_SUFFIX)])
    else:
        names = {final_name(Path(n).name) for n in only}
    recovered: list[str] = []
    for name in sorted(names):
        sources = [directory / (name + OPEN_SUFFIX), *_stale_claims(directory, name)]
        claim = _claim(directory, sources, name)
        if claim is None:
            continue
        final = directory / name
        try:
            good = _good_prefix(claim)
            if good == 0:
                claim.unlink()
                continue
            with open(claim, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(claim, final)  # unlike rename, never replaces an existing file
            except FileExistsError:
                os.rename(claim, directory / (name + OPEN_SUFFIX))  # give it back untouched
                raise ArchiveError(
                    f"cannot recover {name}{OPEN_SUFFIX}: {final} already exists; "
                    "move one of them out of the archive folder"
                ) from None
            claim.unlink()
            fsync_dir(directory)
        except OSError as exc:
            raise ArchiveError(f"cannot recover {claim}: {exc}", errno=exc.errno) from exc
        recovered.append(name)
    return recovered
