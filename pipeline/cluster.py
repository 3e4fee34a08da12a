"""What the Ray cluster can run, checked on the driver before any data moves.

Ray waits forever for an actor no node can hold: a segmentation pool that asks for GPUs on a
cluster without any would hang the build silently. ``check_gpus`` fails fast instead, unless an
autoscaler might still add a node that has them; ``cpus_beside_segmentation`` tells the driver
whether tasks can run beside the pool's actors in one execution. The decision (``gpu_shortfall``) is plain
Python over what Ray reports, so tests can call it without a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from operators.segment import SegmentConfig, pool_cpus

log = logging.getLogger("pipeline")

GPU = "GPU"
STATUS_WAIT_S = 15  # how long to wait for a first autoscaler report before deciding none runs
READONLY_NODE_TYPE_PREFIX = "node_"  # Ray's monitor names each node of a cluster it cannot scale "node_<node id>"


# A local instance the build starts for itself (not one it joins): no dashboard (about ten processes
# that start with Ray and take seconds of CPU a build would wait for), and worker processes kept
# for the whole build. Ray's default kills an idle worker above one per CPU after one second, so
# each of a build's ~30 Ray Data executions started new Python workers (63 in a 1x run of
# bench/e2e.py, most of the build's 136 CPU seconds on 2 CPUs; the naive script needs 14).
# A task's return values under max_direct_call_object_size (100 KiB by default) are sent inline to
# its caller, the driver for every Ray Data task, and a shuffle map task returns one shard per
# partition: with 33 partitions the dedup stage's shards passed through the driver's heap (peak
# 275 MB at 1x, 522 MB at 16x in bench/dedup.py; 317 MB with 8 KiB). cluster.yaml sets the same
# value on every node (RAY_max_direct_call_object_size).
MAX_INLINE_RETURN_BYTES = 8 << 10
LOCAL_RAY_OPTIONS: dict[str, Any] = {
    "include_dashboard": False,
    "_system_config": {
        "idle_worker_killing_time_threshold_ms": 600_000,
        "max_direct_call_object_size": MAX_INLINE_RETURN_BYTES,
    },
}


# Per-task memory, bounded at any corpus size. Ray Data's shuffle (SHUFFLE_V2) coalesces up to 1 GiB
# of input per node into one map task, and a map task buffers its output into blocks of up to 128 MiB
# (target_max_block_size), so below those sizes a task's input grows with the corpus: in dedup a
# block of band rows (16 per document) reached 700,000 rows at 16x bench/dedup.py's corpus. 8 MiB
# each keeps every task of that bench near its 1x size (peak worker 185 / 193 / 200 MB at 1x / 4x /
# 16x) for a few more, smaller tasks. The shuffle cap costs bench/e2e.py's 16x build ~5 % (192.8 s
# against 183.4 s without it; the block cap alone made no difference).
SHUFFLE_INPUT_BATCH_BYTES = 8 << 20
TARGET_MAX_BLOCK_BYTES = 8 << 20


def configure_data_context(context: Any) -> None:
    """Ray Data settings every execution of a build shares (``context``: ``ray.data.DataContext``)."""
    context.shuffle_input_batch_bytes = SHUFFLE_INPUT_BATCH_BYTES
    context.target_max_block_size = TARGET_MAX_BLOCK_BYTES


class ClusterResourceError(RuntimeError):
    """The cluster can never run the build as configured; the message is the one line the CLI prints."""


def gpu_shortfall(
    num_gpus: float,
    node_gpus: Iterable[float],
    node_groups: Iterable[tuple[float, int]] | None = None,
    autoscaler_v2: bool = False,
    autoscaler_status: Mapping[str, Any] | None = None,
) -> str | None:
    """Why no segmentation actor asking for ``num_gpus`` GPUs can ever start, or None if one can (or might).

    ``node_gpus``: GPUs of each alive node. ``node_groups``: (GPUs per node, max nodes) of each
    node group the GCS knows from an autoscaler's cluster config, when one was reported.
    ``autoscaler_v2``: autoscaler v2 runs (it scales from its own config, not shown here).
    ``autoscaler_status``: the v1 monitor's status report, whose node types are ``node_<id>``
    when it only mirrors a cluster it cannot scale.
    """
    if num_gpus <= 0:
        return None
    largest = max(node_gpus, default=0.0)
    if largest >= num_gpus:
        return None
    if node_groups is not None:
        if any(gpus >= num_gpus and max_count != 0 for gpus, max_count in node_groups):
            return None
        scaler = "and the autoscaler's node types offer none"
    elif autoscaler_v2 or _scaling_v1_autoscaler(autoscaler_status):
        log.warning("segment.num_gpus=%s: no node has that many GPUs yet; the autoscaler may add one", num_gpus)
        return None
    else:
        scaler = "and no autoscaler can add one"
    return (
        f"segment.num_gpus={num_gpus:g} needs a node with {num_gpus:g} GPU(s), but no node of the Ray cluster has "
        f"that many (largest: {largest:g}) {scaler}; set segment.num_gpus=0 to segment on CPUs, or add GPU nodes"
    )


def _scaling_v1_autoscaler(status: Mapping[str, Any] | None) -> bool:
    """True when the v1 monitor runs with a real cluster config (node types named by the config)."""
    mapping = ((status or {}).get("autoscaler_report") or {}).get("node_type_mapping") or {}
    return any(node_type != f"{READONLY_NODE_TYPE_PREFIX}{node}" for node, node_type in mapping.items())


def cpus_beside_segmentation(cfg: SegmentConfig) -> float:
    """The CPUs of the connected cluster that the segmentation pool leaves to plain tasks
    (``segment.pool_cpus``). With none left, a task upstream of the pool in the same execution would
    wait forever for the CPU that the pool's actors hold while they wait for its output."""
    import ray

    return ray.cluster_resources().get("CPU", 0.0) - pool_cpus(cfg)


def connect_ray(num_cpus: int | None = None) -> None:
    """Join the cluster in RAY_ADDRESS (as under ``ray job submit``), else start a local one with
    ``num_cpus`` CPUs (default: all of the machine's)."""
    import ray.data

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or "local"  # "local": never join a stray cluster by accident
        local = address == "local"
        ray.init(address=address, num_cpus=num_cpus if local else None, log_to_driver=False, **(LOCAL_RAY_OPTIONS if local else {}))
    context = ray.data.DataContext.get_current()
    configure_data_context(context)
    context.execution_options.preserve_order = True  # same inputs, same row order in every output
    context.enable_progress_bars = True


def stop_ray() -> None:
    """``ray.shutdown()``, less the second it spends on the autoscaler monitor of an instance this process
    started. Ray stops the monitor after the GCS, with SIGTERM; the monitor's handler then tries to tell the
    (stopped) GCS that it died, and is killed a second later (``ray._private.node``, Ray 2.60). A local
    instance has nothing to autoscale and the monitor holds no state, so it is killed first. Joined to a
    cluster (RAY_ADDRESS), this only disconnects, as ``ray.shutdown()`` does."""
    import ray
    import ray._private.worker

    node = ray._private.worker._global_node  # set only where this process started the instance
    if node is not None and node.is_head():
        node.kill_monitor(check_alive=False)
    ray.shutdown()


def check_gpus(num_gpus: float) -> None:
    """Raise ClusterResourceError when the connected cluster can never give an actor ``num_gpus`` GPUs."""
    if num_gpus <= 0:
        return
    import ray

    node_gpus = [node["Resources"].get(GPU, 0.0) for node in ray.nodes() if node.get("Alive")]
    status = _autoscaler_status()
    reason = gpu_shortfall(num_gpus, node_gpus, _node_groups(), _autoscaler_v2(), status)
    deadline = time.monotonic() + STATUS_WAIT_S
    while reason is not None and status is None and time.monotonic() < deadline:
        time.sleep(1)  # a cluster that just started: its monitor has not reported yet
        status = _autoscaler_status()
        reason = gpu_shortfall(num_gpus, node_gpus, _node_groups(), _autoscaler_v2(), status)
    if reason is not None:
        raise ClusterResourceError(reason)


def _node_groups() -> list[tuple[float, int]] | None:
    """(GPUs per node, max nodes) per node group of a cluster config an autoscaler reported, if any."""
    import ray._private.state

    try:
        config = ray._private.state.state.get_cluster_config()
    except Exception:  # noqa: BLE001 - an internal API: without it, fall back to the other signals
        return None
    if config is None or not config.node_group_configs:
        return None
    return [(float(group.resources.get(GPU, 0)), int(group.max_count)) for group in config.node_group_configs]


def _autoscaler_v2() -> bool:
    try:
        from ray.autoscaler.v2.utils import is_autoscaler_v2

        return is_autoscaler_v2(fetch_from_server=True)
    except Exception:  # noqa: BLE001
        return False


def _autoscaler_status() -> dict[str, Any] | None:
    try:
        from ray._private import ray_constants
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        return json.loads(raw) if raw else None
    except Exception:  # noqa: BLE001
        return None
