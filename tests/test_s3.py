"""Object storage: s3:// inputs and output against a real S3-compatible server on 127.0.0.1.

The server is moto's, in this process (``ThreadedMotoServer``), started and stopped by the module
fixture. Builds run as ``python -m pipeline build`` subprocesses configured only the standard way
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), each
starting its own local Ray whose temp dir (all of Ray's logs) lives under the test's folder, so
that the credentials can be looked for in everything the builds left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from manifests import snapshot
from operators import read, storage
from tests.conftest import REPO
from tests.ray_processes import free_port

SAMPLE = REPO / "examples" / "sample"
LEGACY_MODEL = REPO / "examples" / "assets" / "ltp-legacy"
VOCAB = REPO / "examples" / "assets" / "vocab.txt"
IN_BUCKET, OUT_BUCKET = "wwm-raw", "wwm-built"
ACCESS_KEY_ID = "AKIAWWMTEST" + secrets.token_hex(4).upper() + "X"
SECRET = "wwm-s3-secret-" + secrets.token_hex(16)
BUILD_TIMEOUT_S = 1200  # generous: on a busy shared 2-core machine one sample build has taken 5 to 10 minutes


# --- storage.resolve without a server ----------------------------------------------------------


def s3_options(filesystem: pafs.FileSystem) -> dict:
    """The options an S3FileSystem pickles with: what a Ray task carries."""
    return filesystem.__reduce__()[1][0]


def test_s3_endpoint_and_region_come_from_the_standard_variables(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    filesystem, path = storage.resolve("s3://bucket/some/key.jsonl")
    options = s3_options(filesystem)
    assert path == "bucket/some/key.jsonl"
    assert (options["endpoint_override"], options["scheme"], options["region"]) == ("127.0.0.1:9", "http", "eu-west-1")
    assert options["access_key"] is None and options["secret_key"] is None, "credentials stay with the AWS SDK"
    import pickle

    assert SECRET.encode() not in pickle.dumps(filesystem) and ACCESS_KEY_ID.encode() not in pickle.dumps(filesystem)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://minio.example:9000/")  # the service-specific one wins
    assert s3_options(storage.filesystem("s3a://bucket"))["endpoint_override"] == "minio.example:9000"
    assert s3_options(storage.filesystem("s3a://bucket"))["scheme"] == "https"


def test_uris_with_credentials_are_refused_without_echoing_them():
    with pytest.raises(storage.CredentialsInUriError) as caught:
        storage.resolve(f"s3://{ACCESS_KEY_ID}:{SECRET}@bucket/key")
    assert SECRET not in str(caught.value) and ACCESS_KEY_ID not in str(caught.value)


def test_other_schemes_go_through_fsspec_and_only_local_disks_rename_atomically():
    filesystem, path = storage.resolve("memory://wwm-storage-test/a.txt")
    with filesystem.open_output_stream(path) as stream:
        stream.write(b"ok")
    assert filesystem.get_file_info(path).size == 2
    assert storage.resolve("file:///tmp/x")[1] == "/tmp/x"
    assert storage.supports_atomic_rename(storage.filesystem("/tmp"))
    assert not storage.supports_atomic_rename(filesystem)


# --- a real S3-compatible server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 on 127.0.0.1 (a free port), with the sample's JSONL files uploaded; stopped afterwards."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET,
        )
        client.create_bucket(Bucket=IN_BUCKET)
        client.create_bucket(Bucket=OUT_BUCKET)
        for path in sorted(SAMPLE.glob("*.jsonl")):
            client.upload_file(str(path), IN_BUCKET, f"raw/{path.name}")
        client.put_object(Bucket=IN_BUCKET, Key="raw/README.md", Body=b"not an input")  # the glob skips it
        yield {"endpoint": endpoint, "client": client}
    finally:
        server.stop()


@pytest.fixture
def aws_env(s3_server, monkeypatch):
    """The standard variables, set in this process too (for the driver-side helpers called here)."""
    variables = {
        "AWS_ENDPOINT_URL": s3_server["endpoint"],
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    return variables


def test_inputs_are_listed_and_read_from_s3(aws_env):
    files = read.list_inputs([f"s3://{IN_BUCKET}/raw/*.jsonl"])
    assert files == [f"s3://{IN_BUCKET}/raw/{path.name}" for path in sorted(SAMPLE.glob("*.jsonl"))]
    assert read.list_inputs([f"s3://{IN_BUCKET}/raw"]) == files  # a "directory": its readable files
    rows = list(read.RecordReader(read.ReadConfig()).records(files[0]))
    local = [line for line in (SAMPLE / Path(files[0]).name).read_bytes().splitlines() if line.strip()]
    assert len(rows) == len(local) and all(row["source"] == files[0] for row in rows)
    ranged = read.ReadConfig(range_bytes=500)  # ranged reads of the object give the same records
    parts = read.ranges(files[0], ranged)
    reader = read.RecordReader(ranged)
    assert len(parts) > 1 and rows == [
        row for p in parts for row in reader.range_records(files[0], p["start"], p["end"], p["first_record"])
    ]
    with pytest.raises(read.InputError):
        read.list_inputs([f"s3://{IN_BUCKET}/nothing/*.jsonl"])


def test_manifest_commit_on_s3_is_one_put(aws_env, s3_server):
    output = f"s3://{OUT_BUCKET}/commit-test"
    snapshot.commit(output, {"version": 7, "files": []})
    keys = [
        item["Key"]
        for item in s3_server["client"].list_objects_v2(Bucket=OUT_BUCKET, Prefix="commit-test/")["Contents"]
    ]
    assert keys == ["commit-test/manifest.json"], "no temporary object: S3 has no rename"
    assert snapshot.read_manifest(output)["version"] == 7 and snapshot.next_version(output) == 8


def test_a_file_linked_into_the_next_version_on_s3_is_a_copy_beside_the_original(aws_env, s3_server):
    """What a refresh does with the previous version's files it keeps (``snapshot.link``: ``carry``, and the docs
    and shard files before the first file it reads): S3 has no hard links, so the object is copied."""
    output = f"s3://{OUT_BUCKET}/link-test"
    old, new = "shards/part-v00001-000000.arrow", "shards/part-v00002-000000.arrow"
    snapshot.write_bytes(output, old, b"examples of docs file 0")
    snapshot.link(output, old, new)
    client = s3_server["client"]
    bodies = [client.get_object(Bucket=OUT_BUCKET, Key=f"link-test/{key}")["Body"].read() for key in (old, new)]
    assert bodies == [b"examples of docs file 0"] * 2


def run_build(config: Path, env: dict[str, str], log: Path) -> str:
    """``python -m pipeline build`` as a separate process; its stdout+stderr, also kept in ``log``."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "build", str(config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:  # the build (and the local Ray it started) was killed
        output = expired.output.decode(errors="replace") if isinstance(expired.output, bytes) else expired.output or ""
        log.write_text(output, encoding="utf-8")
        pytest.fail(f"build still running after {BUILD_TIMEOUT_S} s; its log: {log}\n{output[-3000:]}")
    log.write_text(done.stdout, encoding="utf-8")
    assert done.returncode == 0, done.stdout[-5000:]
    return done.stdout


def objects(client, bucket: str, prefix: str) -> dict[str, bytes]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"][len(prefix) :]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def check_snapshot(stored: dict[str, bytes], version: int) -> dict:
    """manifest.json names exactly the data files stored, with their sizes and checksums.

    (Keys ending in a slash, e.g. ``docs/``, are the empty directory markers pyarrow's
    ``create_dir`` leaves on S3.)
    """
    manifest = json.loads(stored["manifest.json"])
    assert manifest["version"] == version
    listed = {entry["path"]: entry for entry in manifest["files"]}
    data = {key for key in stored if "/" in key and not key.endswith("/") and not key.startswith("versions/")}
    assert data == {path for path in listed if "/" in path}, "older versions' files are gone, nothing is missing"
    assert {"report.json", "report.txt"} <= set(listed)
    for path, entry in listed.items():
        assert len(stored[path]) == entry["size"] and hashlib.sha256(stored[path]).hexdigest() == entry["sha256"]
    assert all(f"part-v{version:05d}-" in path for path in data)
    assert not [key for key in stored if ".tmp" in key or key.endswith(".staged") or key == "writer.lock"]
    for old in range(1, version):  # older versions are archived copies, complete with their manifest
        archived = json.loads(stored[f"versions/v{old:05d}/manifest.json"])
        for entry in archived["files"]:
            body = stored[f"versions/v{old:05d}/{entry['path']}"]
            assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    return manifest


def test_build_and_refresh_with_s3_inputs_and_output(s3_server, tmp_path):
    """A full build from s3:// JSONL to an s3:// output, then, after one input changed, a refresh."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="wwm-s3-", dir="/tmp"))  # short: Ray's unix sockets live below it
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "RAY_ADDRESS"))}
    env.update(
        AWS_ENDPOINT_URL=s3_server["endpoint"],
        AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION="us-east-1",
        RAY_TMPDIR=str(ray_tmp),
        RAY_USAGE_STATS_ENABLED="0",
    )
    config = tmp_path / "s3.yaml"
    config.write_text(
        json.dumps(
            {
                "inputs": [f"s3://{IN_BUCKET}/raw/*.jsonl"],
                "output": f"s3://{OUT_BUCKET}/corpus",
                "segment": {"model": str(LEGACY_MODEL)},
                "tokenize": {"tokenizer": str(VOCAB), "max_seq_len": 128},
                "write": {"shard_rows": 20},
            }
        ),
        encoding="utf-8",
    )
    client = s3_server["client"]
    try:
        first_log = run_build(config, env, tmp_path / "build1.log")
        first = objects(client, OUT_BUCKET, "corpus/")
        manifest = check_snapshot(first, version=1)
        report = json.loads(first["report.json"])
        records = sum(1 for path in SAMPLE.glob("*.jsonl") for line in path.read_bytes().splitlines() if line.strip())
        assert report["fates"]["records"] == records and report["inputs"] == 2
        assert report["corpus"]["docs"] > 0 and manifest["corpus"]["shards"] >= 1
        assert f"wrote s3://{OUT_BUCKET}/corpus (version 1)" in first_log

        import io

        import pyarrow.parquet as pq

        fates = [pq.read_table(io.BytesIO(body)) for key, body in first.items() if key.startswith("fates/") and body]
        sources = {source for table in fates for source in table.column("source").to_pylist()}
        assert sources == {f"s3://{IN_BUCKET}/raw/{path.name}" for path in SAMPLE.glob("*.jsonl")}

        changed = min(SAMPLE.glob("*.jsonl"))
        added = json.dumps({"text": "刷新测试：这是一段新加入的文字，用来检查对象存储上的增量刷新是否只读取改动过的文件。"},
                           ensure_ascii=False)
        client.put_object(Bucket=IN_BUCKET, Key=f"raw/{changed.name}",
                          Body=changed.read_bytes().rstrip(b"\n") + b"\n" + added.encode() + b"\n")
        second_log = run_build(config, env, tmp_path / "build2.log")
        second = objects(client, OUT_BUCKET, "corpus/")
        check_snapshot(second, version=2)
        refreshed = json.loads(second["report.json"])
        assert refreshed["fates"]["records"] == report["fates"]["records"] + 1
        assert refreshed["refresh"]["mode"] == "refresh"
        assert refreshed["refresh"]["files"]["changed"] == 1 and refreshed["refresh"]["files"]["unchanged"] == 1
        assert refreshed["refresh"]["records_read"] == report["sources"][f"s3://{IN_BUCKET}/raw/{changed.name}"] + 1
        assert f"wrote s3://{OUT_BUCKET}/corpus (version 2)" in second_log

        leaks = [f"s3://{OUT_BUCKET}/corpus/{key}" for key, body in second.items() if _has_credentials(body)]
        leaks += [
            str(p) for p in (tmp_path / "build1.log", tmp_path / "build2.log") if _has_credentials(p.read_bytes())
        ]
        ray_files = [path for path in ray_tmp.rglob("*") if path.is_file() and not path.is_symlink()]
        assert any(path.suffix in (".log", ".out", ".err") for path in ray_files), "Ray's logs are where expected"
        leaks += [str(path) for path in ray_files if _has_credentials(_read(path))]
        assert not leaks, f"credentials found in: {leaks}"
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _has_credentials(body: bytes) -> bool:
    return SECRET.encode() in body or ACCESS_KEY_ID.encode() in body


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # sockets, files Ray removed meanwhile
        return b""
