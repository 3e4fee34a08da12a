"""Snapshots: ``manifest.json`` names every file of the current version with its size and sha256.

A build writes all its files first, under names that carry its version, and commits last by
replacing ``manifest.json`` in one step (temp file + rename). A reader that opens the
manifest therefore sees one complete version, never a half-written one.

Older versions stay readable: before the commit of version N, every file of the current version
K gets a copy under ``versions/v<K>/`` with the same relative path (a hard link on a local disk,
so it costs no space; a copy on object stores), and ``versions/v<K>/manifest.json`` is written
last. An archived version is therefore a corpus folder of its own (``verify``, ``inspect`` and the
loader read it like the current one). After the commit, files of K that N does not list leave the
top-level folders (``remove_unlisted``), which thus hold exactly the current version.
``resolve`` turns (output, version) into the folder and manifest of that version;
``python -m pipeline gc OUT --keep N`` deletes all but the newest N archived versions.

Object stores (S3 and the like) have no rename: there the manifest is written with one direct
put, last, which readers also see whole (old object or new, never a mix). One writer per
output: a build holds ``writer.lock`` (host, pid, start time), created exclusively on a local
disk; a second build refuses to start while it is held by a live process. On object stores the
lock is a plain put checked before (pyarrow has no conditional write), so two builds started in
the same instant could both pass it: run one build per output at a time.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
from typing import Any

import pyarrow.fs as pafs

from operators import storage

MANIFEST = "manifest.json"
FORMAT = 1
VERSIONS_DIR = "versions"
LOCK = "writer.lock"
DESCRIBE_TASKS = 64  # most tasks that checksum one build's files


class VersionError(ValueError):
    """A version that is neither current nor archived; the message lists the ones there are."""


class WriterLockError(RuntimeError):
    """Another build holds the output's writer lock; the message is the one line the CLI prints."""


def read_manifest(output: str) -> dict[str, Any] | None:
    filesystem, inner = storage.resolve(storage.join(output, MANIFEST))
    if filesystem.get_file_info(inner).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(inner) as stream:
        return json.loads(stream.read())


def next_version(output: str) -> int:
    manifest = read_manifest(output)
    return 1 if manifest is None else int(manifest["version"]) + 1


def describe_file(output: str, relative: str) -> dict[str, Any]:
    """Size and sha256 of one output file, streamed so that a large shard costs no memory."""
    filesystem, inner = storage.resolve(storage.join(output, relative))
    digest, size = hashlib.sha256(), 0
    with filesystem.open_input_stream(inner) as stream:
        while chunk := stream.read(1 << 22):
            digest.update(chunk)
            size += len(chunk)
    return {"path": relative, "size": size, "sha256": digest.hexdigest(), **table_counts(filesystem, inner)}


def table_counts(filesystem: pafs.FileSystem, inner: str) -> dict[str, int]:
    """Rows of a Parquet table; rows and tokens of an Arrow shard; nothing for other files."""
    if inner.endswith(".parquet"):
        import pyarrow.parquet as pq

        return {"rows": pq.ParquetFile(filesystem.open_input_file(inner)).metadata.num_rows}
    if inner.endswith(".arrow"):
        import pyarrow as pa
        import pyarrow.compute as pc

        with filesystem.open_input_stream(inner) as stream:
            table = pa.ipc.open_stream(stream).read_all()
        tokens = pc.sum(pc.list_value_length(table.column("input_ids"))).as_py() if table.num_rows else 0
        return {"rows": table.num_rows, "tokens": tokens}
    return {}


def describe_files(output: str, relatives: list[str]) -> list[dict[str, Any]]:
    """Checksums computed where Ray has room, one small row per file back on the driver: plain tasks of
    a slice of the files each (a Ray Data execution would cost its start-up for a few dozen files)."""
    import ray

    if not relatives:
        return []
    size = math.ceil(len(relatives) / DESCRIBE_TASKS)
    describe = ray.remote(_describe_all)
    slices = [describe.remote(output, relatives[start : start + size]) for start in range(0, len(relatives), size)]
    return [row for rows in ray.get(slices) for row in rows]


def _describe_all(output: str, relatives: list[str]) -> list[dict[str, Any]]:
    return [describe_file(output, path) for path in relatives]


STAGED = ".staged"  # suffix of files with fixed names (reports) written for the next commit


def commit(output: str, manifest: dict[str, Any], staged: list[str] = ()) -> None:
    """Atomically make ``manifest`` the current snapshot (temp file + rename; one put on object stores).

    ``staged``: fixed-name files (``report.json``) written as ``<name>.staged``; they are moved into
    place just before the manifest (rename locally; copy + delete on object stores). A crash between
    the two leaves the next version's report next to the current manifest: ``restore_unversioned``
    puts the current one back from its archive on the next build."""
    for name in staged:
        filesystem, target = storage.resolve(storage.join(output, name))
        source = target + STAGED
        if storage.supports_atomic_rename(filesystem):
            filesystem.move(source, target)
        else:
            filesystem.copy_file(source, target)
            filesystem.delete_file(source)
    filesystem, inner = storage.resolve(storage.join(output, MANIFEST))
    body = json.dumps({"format": FORMAT, "committed_at": time.time(), **manifest}, indent=2, ensure_ascii=False)
    if not storage.supports_atomic_rename(filesystem):
        with filesystem.open_output_stream(inner) as stream:
            stream.write(body.encode())
        return
    temporary = f"{inner}.tmp-{manifest['version']}"
    with filesystem.open_output_stream(temporary) as stream:
        stream.write(body.encode())
    filesystem.move(temporary, inner)


def remove_unlisted(output: str, directories: tuple[str, ...], manifest: dict[str, Any]) -> None:
    """Delete files of older versions in the data folders once the new manifest is committed."""
    listed = {entry["path"] for entry in manifest["files"]}
    for directory in directories:
        filesystem, inner = storage.resolve(storage.join(output, directory))
        for info in filesystem.get_file_info(pafs.FileSelector(inner, allow_not_found=True)):
            if info.type == pafs.FileType.File and f"{directory}/{info.base_name}" not in listed:
                filesystem.delete_file(info.path)


# ---- archived versions ---------------------------------------------------------------------------


def version_dir(version: int) -> str:
    return f"{VERSIONS_DIR}/v{int(version):05d}"


def _exists(filesystem: pafs.FileSystem, inner: str) -> bool:
    return filesystem.get_file_info(inner).type == pafs.FileType.File


def write_bytes(output: str, relative: str, body: bytes) -> None:
    """Replace one file: temp + rename on a local disk (so a hard link to the old file in
    ``versions/`` keeps the old bytes), one put on object stores."""
    filesystem, inner = storage.resolve(storage.join(output, relative))
    filesystem.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    if not storage.supports_atomic_rename(filesystem):
        with filesystem.open_output_stream(inner) as stream:
            stream.write(body)
        return
    temporary = f"{inner}.tmp-{os.getpid()}"
    with filesystem.open_output_stream(temporary) as stream:
        stream.write(body)
    filesystem.move(temporary, inner)


def link(output: str, relative: str, new_relative: str) -> None:
    """A file of the current version under a new name (a hard link locally, a copy on object stores, or
    where hard links fail: another device, a filesystem without them)."""
    filesystem, source = storage.resolve(storage.join(output, relative))
    _, target = storage.resolve(storage.join(output, new_relative))
    if target == source:  # the target is removed first below: that would delete the file
        raise ValueError(f"cannot link {relative} onto itself")
    if storage.supports_atomic_rename(filesystem):
        if os.path.lexists(target):
            os.remove(target)
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    filesystem.copy_file(source, target)


def archive(output: str, manifest: dict[str, Any]) -> str:
    """Copy (local: hard-link) every file ``manifest`` lists to ``versions/v<version>/``, then that
    manifest; returns the folder. Run before the next version's commit, so the version being
    replaced is readable at every moment, and a crash leaves at most a redundant archive."""
    folder = version_dir(manifest["version"])
    filesystem, _ = storage.resolve(output)
    for entry in manifest["files"]:
        _, target = storage.resolve(storage.join(output, folder, entry["path"]))
        filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        link(output, entry["path"], f"{folder}/{entry['path']}")
    body = {k: v for k, v in manifest.items() if k not in ("format", "committed_at")}
    body["archived"] = {"folder": folder, "committed_at": manifest.get("committed_at")}
    text = json.dumps({"format": manifest.get("format", FORMAT), **body}, indent=2, ensure_ascii=False)
    write_bytes(output, f"{folder}/{MANIFEST}", text.encode())
    return folder


def archived_versions(output: str) -> list[int]:
    """Versions with a complete archive (their manifest.json is there), oldest first."""
    filesystem, inner = storage.resolve(storage.join(output, VERSIONS_DIR))
    found = []
    for info in filesystem.get_file_info(pafs.FileSelector(inner, allow_not_found=True)):
        name = info.base_name
        directory = info.type == pafs.FileType.Directory and name.startswith("v") and name[1:].isdigit()
        if directory and _exists(filesystem, f"{info.path}/{MANIFEST}"):
            found.append(int(name[1:]))
    return sorted(found)


def resolve(output: str, version: int | None = None) -> tuple[str, dict[str, Any]]:
    """(folder, manifest) of ``version`` of the corpus at ``output``: the output itself for the
    current version (or ``None``), ``versions/v<version>`` for an archived one. The manifest's
    paths are relative to that folder."""
    current = read_manifest(output)
    if current is None:
        raise VersionError(f"{output}: no {MANIFEST} (not a built corpus)")
    if version is None or int(version) == int(current["version"]):
        return output, current
    folder = storage.join(output, version_dir(version))
    manifest = read_manifest(folder)
    if manifest is None:
        kept = [v for v in archived_versions(output) if v != int(current["version"])]
        raise VersionError(
            f"{output}: no version {version} (current {current['version']}; archived: {kept or 'none'})"
        )
    return folder, manifest


def gc(output: str, keep: int) -> list[int]:
    """Delete archived versions beyond the newest ``keep``; the current version is never touched.
    Returns the versions deleted."""
    if keep < 0:
        raise ValueError("--keep must not be negative")
    current = read_manifest(output)
    if current is None:
        raise VersionError(f"{output}: no {MANIFEST} (not a built corpus)")
    archived = [v for v in archived_versions(output) if v != int(current["version"])]
    doomed = archived[: max(0, len(archived) - keep)]
    for version in doomed:
        filesystem, inner = storage.resolve(storage.join(output, version_dir(version)))
        filesystem.delete_file(f"{inner}/{MANIFEST}")  # first: a half-deleted archive is no longer listed
        filesystem.delete_dir(inner)
    return doomed


def restore_unversioned(output: str, manifest: dict[str, Any]) -> list[str]:
    """Files with fixed names (``report.json``, ...) are replaced just before a commit; a build that
    died in between left the next version's copy. Put the current version's back from its archive."""
    restored = []
    for entry in manifest.get("files", []):
        relative = entry["path"]
        if "/" in relative:
            continue  # versioned names are never overwritten
        filesystem, inner = storage.resolve(storage.join(output, relative))
        if _exists(filesystem, inner) and describe_file(output, relative)["sha256"] == entry["sha256"]:
            continue
        _, saved = storage.resolve(storage.join(output, version_dir(manifest["version"]), relative))
        if _exists(filesystem, saved):
            if _exists(filesystem, inner):
                filesystem.delete_file(inner)
            filesystem.copy_file(saved, inner)
            restored.append(relative)
    return restored


# ---- one writer ------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(output: str) -> dict[str, Any]:
    """Take ``writer.lock``, or raise WriterLockError naming the build that holds it. A lock left by a
    dead process on this host (a killed build) is taken over."""
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    filesystem, inner = storage.resolve(storage.join(output, LOCK))
    filesystem.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    if _exists(filesystem, inner):
        try:
            with filesystem.open_input_stream(inner) as stream:
                other = json.loads(stream.read())
        except (OSError, ValueError):
            other = {}
        if other.get("host") == holder["host"] and isinstance(other.get("pid"), int) and not _alive(other["pid"]):
            filesystem.delete_file(inner)  # stale: its build is gone
        elif other.get("host") == holder["host"] and other.get("pid") == holder["pid"]:
            return holder  # this process already holds it
        else:
            raise WriterLockError(
                f"{output} is being written by another build (host {other.get('host')}, pid {other.get('pid')}, "
                f"since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(other.get('started', 0)))}); "
                f"wait for it, or delete {LOCK} there if that build is dead"
            )
    body = json.dumps(holder).encode()
    if storage.supports_atomic_rename(filesystem):
        try:
            descriptor = os.open(inner, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise WriterLockError(f"{output} is being written by another build that started just now") from None
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(body)
    else:
        with filesystem.open_output_stream(inner) as stream:
            stream.write(body)
    return holder


def release_lock(output: str, holder: dict[str, Any]) -> None:
    filesystem, inner = storage.resolve(storage.join(output, LOCK))
    try:
        with filesystem.open_input_stream(inner) as stream:
            other = json.loads(stream.read())
    except (OSError, ValueError):
        return
    if (other.get("host"), other.get("pid")) == (holder["host"], holder["pid"]):
        filesystem.delete_file(inner)
