"""Where bytes live: one place that turns a local path or a URI into a pyarrow filesystem.

- Local paths (and ``file://`` URIs): ``LocalFileSystem`` and an absolute path.
- ``s3://`` (and ``s3a://``): pyarrow's ``S3FileSystem``, configured the standard AWS way, in the
  process that opens the file (driver or Ray worker): credentials from the AWS default chain
  (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, an EC2
  instance profile, EKS IRSA/pod identity), ``AWS_REGION``/``AWS_DEFAULT_REGION``, and
  ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` for S3-compatible stores (MinIO, Ceph, moto), which
  pyarrow does not read by itself. Credentials are never put into the filesystem object, so they
  never travel with a pickled task and never appear in a config, manifest or report.
- Any other scheme pyarrow knows (``gs://``, ``hdfs://``, ``abfs://``, ...) through
  ``FileSystem.from_uri``, and every other fsspec protocol (``memory://``, ``hf://``, ...)
  wrapped in a ``PyFileSystem``.

URIs that carry credentials (``s3://KEY:SECRET@bucket/...``) are refused: the URI is copied into
the manifest, the fates table and the logs.

Object stores have no atomic rename: ``supports_atomic_rename`` tells the snapshot commit to
write ``manifest.json`` with one direct put instead (see ``manifests/snapshot.py``).
"""

from __future__ import annotations

import functools
import os
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

S3_SCHEMES = ("s3", "s3a")
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # the service-specific one wins, as in the AWS SDKs
REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")


class CredentialsInUriError(ValueError):
    """A URI with a user or password in it; the message never repeats the URI."""


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI such as s3://bucket/key."""
    if not is_uri(location):
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))
    scheme, rest = location.split("://", 1)
    scheme = scheme.lower()
    if "@" in rest.split("/", 1)[0]:
        raise CredentialsInUriError(
            f"a {scheme}:// URI carries credentials (user:secret@...); remove them and use the standard "
            "variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...), a profile or an instance role"
        )
    if scheme == "file":
        return pafs.LocalFileSystem(), os.path.abspath(urlsplit(location).path)
    if scheme in S3_SCHEMES:
        return s3_filesystem(rest.split("/", 1)[0]), rest.rstrip("/")
    try:
        return pafs.FileSystem.from_uri(location)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return _fsspec(location)


def filesystem(location: str) -> pafs.FileSystem:
    """The filesystem of ``location`` alone, e.g. for ``ray.data.read_parquet(..., filesystem=)``."""
    return resolve(location)[0]


def s3_filesystem(bucket: str = "") -> pafs.S3FileSystem:
    """pyarrow's S3FileSystem from the standard AWS variables (credentials stay with the AWS SDK).

    Without a region variable and without a custom endpoint, the bucket's region is asked of AWS
    (as ``FileSystem.from_uri`` does); set ``AWS_REGION`` to skip that round trip.
    """
    # Delayed open: an object smaller than one upload part is sent with a single PutObject when the
    # stream closes (fewer round trips; manifest.json lands in one put) instead of a multipart upload.
    options: dict[str, object] = {"allow_delayed_open": True}
    endpoint = next((os.environ[name] for name in ENDPOINT_VARIABLES if os.environ.get(name)), None)
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        options["endpoint_override"] = (host or scheme).rstrip("/")
        options["scheme"] = scheme if host else "https"
    region = next((os.environ[name] for name in REGION_VARIABLES if os.environ.get(name)), None)
    if region:
        options["region"] = region
    elif not endpoint and bucket:
        options["region"] = _bucket_region(bucket)
    return pafs.S3FileSystem(**options)


@functools.lru_cache(maxsize=64)
def _bucket_region(bucket: str) -> str:
    """A fact about the bucket, asked once per process (one HEAD request to AWS)."""
    return pafs.resolve_s3_region(bucket)


def supports_atomic_rename(filesystem: pafs.FileSystem) -> bool:
    """True where ``move`` replaces a file in one step (local disks); object stores copy then delete."""
    return isinstance(filesystem, pafs.LocalFileSystem)


def _fsspec(location: str) -> tuple[pafs.FileSystem, str]:
    try:
        import fsspec.core
    except ImportError:
        raise ValueError(f"no filesystem for {location.split('://', 1)[0]}:// URIs (fsspec is not installed)") from None
    fs, path = fsspec.core.url_to_fs(location)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts])


def is_uri(location: str) -> bool:
    return "://" in location
