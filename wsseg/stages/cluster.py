"""Per-image work on a Ray cluster: the same tasks as the local pool, results back in input order.

The driver (the process that runs the stage) submits each image's task to the cluster and takes the
results back in order; only it writes the project's database. A worker writes nothing but the
artifact files its task names (in the run's folder, which every node must see at the same path: a
shared file system), so the workers need the code (``wsseg`` installed, as on the driver), the images
and the project's ``artifacts/`` folder; never ``project.sqlite``.

Ray retries a task whose worker process or node died (``TASK_TRIES`` runs in all); a task that still
cannot finish comes back as ``Failed("WorkerDied", ...)`` and the stage names its image as skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from wsseg.errors import BadInputError
from wsseg.stages.tasks import TASK_TRIES, Failed, one_thread

T = TypeVar("T")

#: Tasks in flight per CPU of the cluster: enough to keep every worker busy while the driver stores.
IN_FLIGHT_PER_CPU = 2


def _call(run: Callable[[Any], T], task: Any) -> T:
    one_thread()
    return run(task)


#: The address this process joined (Ray joins one cluster at a time).
_JOINED: dict[str, str] = {}


def _is_loopback(address: str) -> bool:
    return address.split("://")[-1].rsplit(":", 1)[0] in ("127.0.0.1", "localhost")


def _keep_to_loopback() -> None:
    """Keep this process's Ray, and the processes it starts, on 127.0.0.1. Ray swaps a loopback
    address for the machine's network address (so that other machines could join); a cluster of one
    machine (the tests, the bench) must not leave the loopback. Ray reads the switch at import (its
    child processes) and at each look-up (this process)."""
    os.environ[_LOOPBACK_SWITCH] = "0"
    if "ray" in sys.modules:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


#: Ray's switch for "clusters of several machines" (off: every address is the loopback).
_LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _import_ray(address: str) -> Any:
    if _is_loopback(address):
        _keep_to_loopback()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports home: the machines are offline
    try:
        import ray
    except ImportError:
        raise BadInputError("--cluster", "needs Ray: pip install -r requirements.txt") from None
    return ray


def _answers(address: str, seconds: float = 5.0) -> str | None:
    """None when something accepts a TCP connection at ``host:port`` (Ray's head), else why not."""
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        return f"expected HOST:PORT (such as 10.0.0.5:6379) or auto, got {address!r}"
    try:
        with socket.create_connection((host, int(port)), timeout=seconds):
            return None
    except OSError as error:
        return str(error) or type(error).__name__


def connect(address: str) -> Any:
    """Join the Ray cluster at ``address`` (``host:port`` of its head, or ``auto`` for the one started
    on this machine with ``ray start``); return the ``ray`` module. Joining again does nothing. An
    address where nothing answers is refused at once (Ray itself would retry for minutes)."""
    ray = _import_ray(address)
    if ray.is_initialized():
        if _JOINED.get("address") == address:
            return ray
        ray.shutdown()  # joined another cluster before: leave it for this one
    if address != "auto" and (why := _answers(address)) is not None:
        raise BadInputError(
            f"--cluster {address}",
            f"no Ray cluster answers there ({why}); start its head with `ray start --head --port 6379` "
            "and give its address as HOST:6379",
        )
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BadInputError(
            f"--cluster {address}",
            "no Ray cluster answers there; start its head with `ray start --head --port 6379` and give "
            f"its address as HOST:6379 ({first})",
        ) from None
    _JOINED["address"] = address
    return ray


def disconnect() -> None:
    """Leave the cluster this process joined (nothing when it joined none)."""
    _JOINED.clear()
    if "ray" in sys.modules:
        import ray

        ray.shutdown()


@contextlib.contextmanager
def local_cluster(nodes: int = 2, cpus: int = 1, memory_mb: int = 100) -> Iterator[Any]:
    """A Ray cluster of ``nodes`` nodes on this machine's loopback, ``cpus`` CPUs and an object store
    of ``memory_mb`` MB each (the head is the first): Ray's own multi-node test cluster
    (``ray.cluster_utils.Cluster``). Yields it (``.address``; ``.list_all_nodes()``,
    ``.remove_node(node, allow_graceful=False)`` kills a node); shut down on exit."""
    _import_ray("127.0.0.1:0")
    from ray.cluster_utils import Cluster

    args = {"num_cpus": cpus, "node_ip_address": "127.0.0.1", "object_store_memory": memory_mb * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={**args, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**args)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        disconnect()
        cluster.shutdown()


def cluster_cpus(ray: Any) -> int:
    """The CPUs the cluster has now, all nodes together (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def map_on_cluster(run: Callable[[Any], T], tasks: Sequence[Any], address: str) -> Iterator[T | Failed]:
    """``run(task)`` for every task on the Ray cluster at ``address``, yielded in order.

    At most ``IN_FLIGHT_PER_CPU`` tasks per cluster CPU are in flight. Each task takes one CPU; Ray runs
    it again on another worker when its worker or node dies (``TASK_TRIES`` runs in all); after that
    it yields ``Failed("WorkerDied", ...)`` and the rest go on. An error ``run`` raises (one it does not
    turn into ``Failed`` itself) is raised here as itself."""
    ray = connect(address)
    from ray.exceptions import (
        NodeDiedError,
        ObjectLostError,
        OwnerDiedError,
        RayTaskError,
        WorkerCrashedError,
    )

    died = (WorkerCrashedError, NodeDiedError, ObjectLostError, OwnerDiedError)
    remote = ray.remote(_call).options(num_cpus=1, max_retries=TASK_TRIES - 1, retry_exceptions=False)
    shared = ray.put(run)
    window = IN_FLIGHT_PER_CPU * cluster_cpus(ray)
    flight: deque[Any] = deque()
    submitted = 0
    try:
        while flight or submitted < len(tasks):
            while submitted < len(tasks) and len(flight) < window:
                flight.append(remote.remote(shared, tasks[submitted]))
                submitted += 1
            ref = flight.popleft()
            try:
                yield ray.get(ref)
            except died as error:
                yield Failed("WorkerDied", f"its worker died {TASK_TRIES} times ({type(error).__name__})")
            except RayTaskError as error:
                raise error.as_instanceof_cause() from None
    finally:
        for ref in flight:  # stopped early (an error, Ctrl-C): the cluster drops the rest
            ray.cancel(ref, force=True)
