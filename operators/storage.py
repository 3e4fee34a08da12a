"""Where bytes live: one place that turns a local path or a URI into a pyarrow filesystem."""

from __future__ import annotations

import os

import pyarrow.fs as pafs


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI such as s3://bucket/key."""
    if "://" not in location:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))
    if location.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        return _s3_with_endpoint(os.environ["AWS_ENDPOINT_URL"]), location.removeprefix("s3://")
    return pafs.FileSystem.from_uri(location)


def _s3_with_endpoint(endpoint: str) -> pafs.S3FileSystem:
    """pyarrow's S3FileSystem ignores AWS_ENDPOINT_URL, so S3-compatible stores need it passed in."""
    scheme, _, host = endpoint.partition("://")
    return pafs.S3FileSystem(endpoint_override=host or scheme, scheme=scheme if host else "https")


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts])


def is_uri(location: str) -> bool:
    return "://" in location
