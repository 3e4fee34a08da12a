"""Running on a cluster: the launcher config, the KubeRay RayJob, `ray job submit`, GPU placement.

The launcher config goes through Ray's own validation; the RayJob is checked for what KubeRay
requires. Job submission runs against a real two-node Ray cluster this test starts with
``ray start`` (token auth on, dashboard on 127.0.0.1) and stops process by process. GPU placement
runs on a ``ray.cluster_utils.Cluster`` whose nodes declare GPUs they do not have.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from packaging.requirements import Requirement

from operators import segment
from pipeline import cluster
from pipeline.cli import main
from tests.conftest import REPO, start_local_ray

CLUSTER_YAML = REPO / "cluster.yaml"
RAYJOB_YAML = REPO / "deploy" / "kuberay" / "rayjob.yaml"
RUNTIME_ENV_YAML = REPO / "deploy" / "job-runtime-env.yaml"
CONSTRAINTS = REPO / "deploy" / "constraints.txt"
LEGACY_MODEL = REPO / "examples" / "assets" / "ltp-legacy"
VOCAB = REPO / "examples" / "assets" / "vocab.txt"
SAMPLE = REPO / "examples" / "sample"

AWS_GPU_FAMILIES = ("g4dn", "g5", "g6", "g6e", "p3", "p4d", "p4de", "p5")
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
AWS_ACCESS_KEY = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
TEXTS = [
    "城市的夜晚总是很安静，街道两旁的路灯一盏一盏地亮起来。",
    "人们下班以后回到家里，和家人一起吃饭、聊天，然后早早休息。",
    "北京是中国的首都，也是一座历史悠久的城市。",
    "今天天气很好，我们去公园散步吧。",
] * 4


# --- the launcher config -----------------------------------------------------------------------


def launcher_config() -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8"))))
    validate_config(config)  # Ray's schema (ray/autoscaler/ray-schema.json) plus its own checks
    return config


def test_cluster_yaml_passes_ray_validation():
    config = launcher_config()
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "the head only schedules and runs the driver"
    workers = {name: spec for name, spec in types.items() if name != config["head_node_type"]}
    gpu = {name: spec for name, spec in workers.items() if spec["resources"].get("GPU", 0) > 0}
    cpu = {name: spec for name, spec in workers.items() if name not in gpu}
    assert gpu and cpu, "a CPU worker group and a GPU worker group"
    for spec in gpu.values():
        assert spec["node_config"]["InstanceType"].split(".")[0] in AWS_GPU_FAMILIES
        assert spec["resources"]["CPU"] == 0, "no CPUs offered to Ray: CPU stages never land on GPU nodes"
        assert spec["max_workers"] > 0
    assert all(spec["max_workers"] > 0 and spec["resources"].get("CPU", 0) > 0 for spec in cpu.values())


def test_cluster_yaml_installs_the_pinned_project_and_holds_no_credentials():
    config = launcher_config()
    assert config["file_mounts"]["~/wwm-corpus"] == "."
    assert ".git" in config["rsync_exclude"]
    setup = config["setup_commands"]
    assert any('"torch==2.13.0"' in command for command in setup)
    assert any(
        "-c ~/wwm-corpus/deploy/constraints.txt -e" in command and "wwm-corpus[cluster]" in command for command in setup
    )
    assert setup == config["head_setup_commands"][: len(setup)] == config["worker_setup_commands"][: len(setup)]
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert sum("RAY_AUTH_MODE=token ray start" in command for command in starts) == 2
    # every node inlines task results as a local build does (cluster.MAX_INLINE_RETURN_BYTES)
    inline = f"RAY_max_direct_call_object_size={cluster.MAX_INLINE_RETURN_BYTES} "
    assert sum(inline in command for command in starts) == 2
    for spec in config["available_node_types"].values():
        assert spec["node_config"]["IamInstanceProfile"]["Name"], "credentials come from an instance profile"
    text = CLUSTER_YAML.read_text(encoding="utf-8")
    assert not AWS_ACCESS_KEY.search(text)
    for command in [*setup, *starts, *config["initialization_commands"]]:
        assert not any(variable in command for variable in CREDENTIAL_VARIABLES), command


def test_constraints_pin_versions_that_pyproject_allows():
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    allowed = {_name(Requirement(line).name): Requirement(line).specifier for line in declared}
    pinned = [Requirement(line) for line in CONSTRAINTS.read_text().splitlines() if line and not line.startswith("#")]
    assert pinned
    for requirement in pinned:
        (spec,) = requirement.specifier
        assert spec.operator == "==", requirement
        if _name(requirement.name) in allowed:
            assert allowed[_name(requirement.name)].contains(spec.version), requirement
    import ray

    assert any(_name(r.name) == "ray" and str(r.specifier) == f"=={ray.__version__}" for r in pinned)


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the KubeRay RayJob ------------------------------------------------------------------------


def rayjob_documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(RAYJOB_YAML.read_text(encoding="utf-8")) if doc}


def containers_of(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_rayjob_has_the_fields_kuberay_requires():
    job = rayjob_documents()["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    assert job["metadata"]["name"]
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python -m pipeline build ")
    cluster_spec = spec["rayClusterSpec"]
    assert cluster_spec["rayVersion"] == __import__("ray").__version__
    head = cluster_spec["headGroupSpec"]
    groups = [head, *cluster_spec["workerGroupSpecs"]]
    for group in groups:
        assert isinstance(group["rayStartParams"], dict)
        assert all(isinstance(value, str) for value in group["rayStartParams"].values()), "KubeRay wants strings"
        assert containers_of(group) and all(container["image"] for container in containers_of(group))
        for container in containers_of(group):  # every pod inlines task results as a local build does
            env = {variable["name"]: variable.get("value") for variable in container.get("env", [])}
            assert env.get("RAY_max_direct_call_object_size") == str(cluster.MAX_INLINE_RETURN_BYTES)
    for group in cluster_spec["workerGroupSpecs"]:
        assert group["groupName"]
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    gpu_groups = [g for g in cluster_spec["workerGroupSpecs"] if any(_gpus(c) for c in containers_of(g))]
    cpu_groups = [g for g in cluster_spec["workerGroupSpecs"] if g not in gpu_groups]
    assert gpu_groups and cpu_groups
    for group in gpu_groups:
        assert all(_gpus(c) >= 1 for c in containers_of(group)), "nvidia.com/gpu limits on every GPU container"
        assert group["rayStartParams"]["num-cpus"] == "0", "CPU stages never land on GPU pods"
    assert head["rayStartParams"].get("num-cpus") == "0"
    assert cluster_spec["authOptions"]["mode"] == "token"


def _gpus(container: dict) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def test_rayjob_config_is_a_valid_build_config_and_no_credentials_are_inline(tmp_path):
    from pipeline.config import load_config

    documents = rayjob_documents()
    job, config_map = documents["RayJob"], documents["ConfigMap"]
    head_pod = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mount = next(m for m in head_pod["containers"][0]["volumeMounts"] if m["name"] == "build-config")
    volume = next(v for v in head_pod["volumes"] if v["name"] == "build-config")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    config_path = job["spec"]["entrypoint"].split()[-1]
    assert config_path.startswith(mount["mountPath"] + "/")
    (tmp_path / "build.yaml").write_text(config_map["data"][Path(config_path).name], encoding="utf-8")
    cfg = load_config(tmp_path / "build.yaml")  # unknown keys or bad values would raise here
    assert cfg.output.startswith("s3://") and all(path.startswith("s3://") for path in cfg.inputs)
    assert cfg.segment.num_gpus > 0

    pods = [job["spec"]["submitterPodTemplate"]["spec"]] + [
        group["template"]["spec"]
        for group in [
            job["spec"]["rayClusterSpec"]["headGroupSpec"],
            *job["spec"]["rayClusterSpec"]["workerGroupSpecs"],
        ]
    ]
    for pod in pods:
        assert pod["serviceAccountName"] == documents["ServiceAccount"]["metadata"]["name"]
        for container in pod["containers"]:
            for variable in container.get("env", []):
                assert variable["name"] not in CREDENTIAL_VARIABLES or "value" not in variable, variable
    assert not AWS_ACCESS_KEY.search(RAYJOB_YAML.read_text(encoding="utf-8"))


def test_job_runtime_env_excludes_big_folders():
    runtime_env = yaml.safe_load(RUNTIME_ENV_YAML.read_text(encoding="utf-8"))
    assert set(runtime_env) == {"excludes"}, "no env_vars: credentials never travel in a runtime env"
    assert {".git", "out/"} <= set(runtime_env["excludes"])


# --- stopping -----------------------------------------------------------------------------------

STOP_LOCAL_RAY = """
import json, os, time
import ray._private.worker
from pipeline import cluster
from tests import processes

cluster.connect_ray(1)
started = processes.descendants(os.getpid())  # pid -> title
monitor = ray._private.worker._global_node.all_processes["monitor"][0].process.pid
cluster.stop_ray()
deadline, left = time.monotonic() + 30, started
while left and time.monotonic() < deadline:  # the raylet's workers notice it is gone on their own
    time.sleep(0.2)
    left = {pid: name for pid, name in left.items() if name and processes.title(pid) == name}  # not a zombie
print(json.dumps({"started": sorted(started), "monitor": monitor, "left": sorted(left)}))
"""


def test_stop_ray_ends_every_process_of_a_local_instance():
    """``stop_ray`` kills the autoscaler monitor itself, then stops Ray: nothing the instance started may
    outlive it, the monitor included."""
    run = subprocess.run([sys.executable, "-c", STOP_LOCAL_RAY], cwd=REPO, capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["monitor"] in result["started"] and len(result["started"]) >= 4
    assert result["left"] == []


# --- the GPU check (pure) ----------------------------------------------------------------------


def test_cpus_beside_segmentation_count_what_the_pool_holds(ray_local, neural_model_dir, legacy_model_dir):
    """Pass 2 streams the records into the pool only where a task can run beside its actors (else a 1-CPU
    build would hang: the one actor holds the CPU that the tasks feeding it wait for)."""
    cpus = ray_local.cluster_resources()["CPU"]
    neural = str(neural_model_dir)
    assert cluster.cpus_beside_segmentation(segment.SegmentConfig(neural, num_actors=1)) == cpus - 1
    assert cluster.cpus_beside_segmentation(segment.SegmentConfig(neural, num_actors=int(cpus))) == 0
    one_wide = segment.SegmentConfig(neural, num_actors=1, threads_per_actor=int(cpus))
    assert cluster.cpus_beside_segmentation(one_wide) == 0
    assert cluster.cpus_beside_segmentation(segment.SegmentConfig(neural, num_gpus=1, num_actors=4)) == cpus  # GPU actors
    # plain tasks, no pool: BERT's words, and the legacy model on the CPU however many actors are asked for
    assert cluster.cpus_beside_segmentation(segment.SegmentConfig(model="none")) == cpus
    assert cluster.cpus_beside_segmentation(segment.SegmentConfig(str(legacy_model_dir), num_actors=int(cpus))) == cpus


def test_gpu_shortfall_without_any_gpu_and_no_autoscaler():
    reason = cluster.gpu_shortfall(1, [0, 0])
    assert reason and "\n" not in reason
    assert "segment.num_gpus=1" in reason and "no autoscaler" in reason and "segment.num_gpus=0" in reason


@pytest.mark.parametrize(
    "num_gpus, node_gpus, groups, v2, status",
    [
        (0, [0], None, False, None),  # CPU segmentation runs anywhere
        (1, [0, 1], None, False, None),  # a GPU node is there
        (0.5, [1], None, False, None),  # fractions share a GPU
        (1, [0], [(0, 4), (1, 2)], False, None),  # the autoscaler's config has a GPU node type
        (1, [0], None, True, None),  # autoscaler v2: it may add one
        (1, [0], None, False, {"autoscaler_report": {"node_type_mapping": {"abc": "gpu_worker"}}}),
    ],
)
def test_gpu_shortfall_allows(num_gpus, node_gpus, groups, v2, status):
    assert cluster.gpu_shortfall(num_gpus, node_gpus, groups, v2, status) is None


@pytest.mark.parametrize(
    "num_gpus, node_gpus, groups, status",
    [
        (2, [1, 1], None, None),  # no node has two
        (1, [0], [(0, 4)], None),  # the autoscaler only has CPU node types
        (1, [0], [(1, 0)], None),  # ... or a GPU type capped at zero nodes
        (1, [0], None, {"autoscaler_report": {"node_type_mapping": {"abc": "node_abc"}}}),  # read-only monitor
    ],
)
def test_gpu_shortfall_refuses(num_gpus, node_gpus, groups, status):
    assert cluster.gpu_shortfall(num_gpus, node_gpus, groups, False, status)


# --- GPU placement on a simulated cluster ------------------------------------------------------


@pytest.fixture(scope="module")
def simulated_cluster():
    """A CPU-only head (schedules only, as in cluster.yaml) and one 2-CPU worker; tests add a GPU node.

    The session's local Ray (tests/conftest.py ``ray_local``) is shut down for the module and
    started again afterwards with the same settings.
    """
    import ray
    from ray.cluster_utils import Cluster

    was_initialized = ray.is_initialized()
    ray.shutdown()
    simulated = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": 128 << 20},
    )
    try:
        cpu_node = simulated.add_node(num_cpus=2, object_store_memory=128 << 20)
        simulated.wait_for_nodes()
        ray.init(address=simulated.address, log_to_driver=False)
        yield {"cluster": simulated, "cpu_node": cpu_node.node_id, "gpu_node": None}
    finally:
        ray.shutdown()
        simulated.shutdown()
        if was_initialized:
            start_local_ray()


@pytest.fixture(scope="module")
def gpu_node(simulated_cluster):
    """Adds a node that declares one GPU and, as the GPU nodes of cluster.yaml, no CPU."""
    node = simulated_cluster["cluster"].add_node(num_cpus=0, num_gpus=1, object_store_memory=128 << 20)
    simulated_cluster["cluster"].wait_for_nodes()
    simulated_cluster["gpu_node"] = node.node_id
    return node.node_id


def sample_config(tmp_path: Path, **overrides) -> Path:
    config = {
        "inputs": [str(p) for p in sorted(SAMPLE.glob("*.jsonl"))],
        "output": str(tmp_path / "out"),
        "segment": {"model": str(LEGACY_MODEL)},
        "tokenize": {"tokenizer": str(VOCAB), "max_seq_len": 128},
        **overrides,
    }
    path = tmp_path / "build.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def test_gpu_segmentation_fails_fast_without_gpus_or_autoscaler(simulated_cluster, tmp_path, capsys):
    import ray

    assert simulated_cluster["gpu_node"] is None, "runs before the GPU node joins (file order)"
    assert not any(node["Resources"].get("GPU") for node in ray.nodes() if node["Alive"])
    with pytest.raises(cluster.ClusterResourceError):
        cluster.check_gpus(1)  # checked first: were it to pass, the build below would wait forever
    started = time.monotonic()
    status = main(["build", str(sample_config(tmp_path)), "--set", "segment.num_gpus=1"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("error: segment.num_gpus=1 ")
    assert time.monotonic() - started < 120
    assert not (tmp_path / "out").exists(), "nothing is written before the check"


def node_recording(base: type) -> type:
    """A subclass of ``base`` that adds the id of the node it runs on to every batch (pickled by value)."""
    import ray

    class NodeRecording(base):
        def __call__(self, batch):
            out = super().__call__(batch)
            return out.append_column("segment_node", pa.array([ray.get_runtime_context().get_node_id()] * out.num_rows))

    return NodeRecording


def record_cpu_node(batch):
    import ray

    return {**batch, "cpu_node": [ray.get_runtime_context().get_node_id()] * len(batch["text"])}


def run_segment(num_gpus: float, monkeypatch, model: Path = LEGACY_MODEL) -> tuple[set[str], set[str]]:
    """A CPU stage, then segment.apply (the real wrapper) on the recording segmenter: (cpu nodes, segment nodes)."""
    import ray.data

    monkeypatch.setattr(segment, "SegmenterActor", node_recording(segment.SegmenterActor))
    cfg = segment.SegmentConfig(model=str(model), num_gpus=num_gpus, num_actors=1, batch_size=8)
    ds = ray.data.from_items([{"text": text} for text in TEXTS], override_num_blocks=2)
    cpu_stage = ds.map_batches(record_cpu_node, batch_format="numpy").materialize()
    rows = segment.apply(cpu_stage, cfg).take_all()
    assert len(rows) == len(TEXTS)
    assert all("".join(row["words"]) == row["text"] for row in rows)
    return {row["cpu_node"] for row in rows}, {row["segment_node"] for row in rows}


def test_segment_actors_run_only_on_gpu_nodes(simulated_cluster, gpu_node, monkeypatch):
    cluster.check_gpus(1)  # a GPU node is there: no error
    cpu_nodes, segment_nodes = run_segment(1, monkeypatch)
    assert segment_nodes == {gpu_node}
    assert cpu_nodes == {simulated_cluster["cpu_node"]}, "CPU stages run on the CPU node only"


def test_cpu_segmentation_runs_anywhere(simulated_cluster, gpu_node, monkeypatch, neural_model_dir):
    """CPU actors (a neural model's: the legacy model runs in plain tasks) are not held to the GPU node."""
    import ray

    cluster.check_gpus(0)
    _, segment_nodes = run_segment(0, monkeypatch, neural_model_dir)
    alive = {node["NodeID"] for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU")}
    assert segment_nodes and segment_nodes <= alive


# --- joining a running Ray instance ------------------------------------------------------------


def test_a_build_that_joins_a_running_instance_finds_its_relative_model_path(tmp_path):
    """``RAY_ADDRESS`` without ``ray job submit``: the workers start where Ray was started, not in the
    driver's directory, so the model path of examples/sample.yaml (relative) must reach them made
    absolute (``segment.located_for_workers``)."""
    pytest.importorskip("aiohttp_cors", reason="waiting for the node asks the dashboard (pip install -e '.[test]')")
    from tests.ray_processes import LocalRayCluster

    root = Path(tempfile.mkdtemp(prefix="wwm-ray-", dir="/tmp"))  # short: Ray's unix sockets live below it
    local = LocalRayCluster(root)
    output = tmp_path / "corpus"
    try:
        local.start_head(num_cpus=2)
        local.wait_for_nodes(1)
        env = {**local.env, "RAY_ADDRESS": f"127.0.0.1:{local.gcs_port}"}
        built = subprocess.run(
            [sys.executable, "-m", "pipeline", "build", "examples/sample.yaml", "--set", f"output={output}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
        report = json.loads((output / "report.json").read_text(encoding="utf-8"))
        assert report["corpus"]["docs"] > 0 and report["corpus"]["shards"] >= 1
    finally:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- `ray job submit` against a running two-node cluster ----------------------------------------


def test_ray_job_submit_builds_on_a_running_cluster(tmp_path):
    pytest.importorskip("aiohttp_cors", reason="the dashboard's job API needs ray[default] (pip install -e '.[test]')")
    from tests.ray_processes import LocalRayCluster

    root = Path(tempfile.mkdtemp(prefix="wwm-ray-", dir="/tmp"))  # short: Ray's unix sockets live below it
    local = LocalRayCluster(root)
    output = tmp_path / "corpus"
    try:
        local.start_head(num_cpus=0)  # as in cluster.yaml: the head runs the driver, the worker the data
        local.add_node(num_cpus=2)
        local.wait_for_nodes(2)
        assert local.request("/api/v0/nodes", token=None)[0] == 401, "token auth is on"
        submitted = local.ray_cli(
            "job", "submit", "--address", local.dashboard_url, "--submission-id", f"wwm-test-{root.name}",
            "--working-dir", ".", "--runtime-env", str(RUNTIME_ENV_YAML.relative_to(REPO)),
            "--", "python", "-m", "pipeline", "build", "examples/sample.yaml", "--set", f"output={output}",
            timeout_s=1200, cwd=REPO,
        )  # fmt: skip
        logs = submitted.stdout + submitted.stderr
        assert submitted.returncode == 0, logs[-6000:]
        assert re.search(r"Job 'wwm-test-[^']+' succeeded", logs), logs[-3000:]
        assert f"wrote {output} (version 1)" in logs

        manifest = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
        report = json.loads((output / "report.json").read_text(encoding="utf-8"))
        assert manifest["version"] == 1 and report["fates"]["records"] > 0 and report["corpus"]["shards"] >= 1
        assert all((output / entry["path"]).is_file() for entry in manifest["files"])

        unpacked = root.glob("*/session_*/runtime_resources/working_dir_files/_ray_pkg_*/pipeline")
        packages = {path.relative_to(root).parts[0]: path.parent for path in unpacked}
        assert set(packages) == {"head", "node1"}, "the working dir reached the worker node: the data work ran there"
        for package in packages.values():
            assert (package / "examples" / "sample.yaml").is_file()
            assert not (package / ".git").exists() and not (package / "out").exists()
    finally:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)
