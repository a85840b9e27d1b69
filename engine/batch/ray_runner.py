"""A batch on a Ray cluster: the only module in Easel that imports Ray, and only when asked for.

The driver (the `easel batch --ray` process) keeps the spec, the manifest and the output folder;
workers are Ray actors, one per GPU (or per `cpus_per_actor` cores on CPU machines), each with
its own model cache, so a model stays loaded across the requests it serves. The driver hands out
requests grouped by model (an actor keeps getting its current model's requests while any are
left) with two in flight per actor so none idles while the driver writes; results come back as
PNG bytes plus metadata and the driver writes them, as the local runner does.

An actor that dies has its in-flight requests put back for the others (an item whose worker died
`MAX_ATTEMPTS` times is recorded as failed: it is probably what kills them). A request that fails
for a reason of its own comes back as a failure and is recorded; the batch goes on. Models reach
workers by path (a shared filesystem, or built-ins that every install has) or, with
`ship_models`, as one tar per model put in Ray's object store: each node pulls it once and
unpacks it into a node-local folder that all its actors share.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.api import GenerationRequest
from engine.batch.filelock import lock
from engine.batch.manifest import Manifest
from engine.batch.request import BatchRequest
from engine.batch.spec import BatchItem, load_spec
from engine.batch.writer import BatchWriter, RateMeter
from engine.errors import EaselError, InputError, ModelError

IN_FLIGHT_PER_ACTOR = 2
MAX_ATTEMPTS = 3
WAIT_S = 0.5  # how often the driver looks up from waiting (Ctrl-C, stop())
START_TIMEOUT_S = 300  # actors that cannot be placed in this long never will be
SHIPPED_DIR_NAME = "easel-ray-models"


def import_ray():
    try:
        import ray
    except ModuleNotFoundError:
        raise InputError(
            '--ray needs Ray, which is not installed: pip install "easel[cluster]" '
            "(or pip install ray), on this machine and on every cluster node."
        ) from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    #: "auto" (join a running cluster, else start one here), "local" (start one here) or an
    #: address such as "10.0.0.5:6379"; None uses the cluster this process already joined
    address: str | None = "auto"
    actors: int = 0  # 0 = one per GPU, else one per `cpus_per_actor` cores
    cpus_per_actor: int = 2
    ship_models: bool = False


def connect(address: str | None) -> bool:
    """Join or start a cluster; True when this call started (and so must shut down) Ray.

    A cluster started here binds to 127.0.0.1 only and runs no dashboard: Easel is offline
    software and opens no ports to the network on its own.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    local = dict(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    if address in (None, "local"):
        ray.init(**local)
        return True
    if address == "auto":
        try:
            ray.init(address="auto", log_to_driver=False)
            return True
        except ConnectionError:
            ray.init(**local)
            return True
    try:
        ray.init(address=address, log_to_driver=False)
    except ConnectionError as exc:
        raise InputError(f"Could not join the Ray cluster at '{address}' ({exc}).") from exc
    return True


class BatchActor:
    """A Ray worker: one model cache, requests in, PNG bytes and metadata out."""

    def __init__(self, cpu_threads: int):
        from engine.services import Services

        self.services = Services()
        self.cpu_threads = cpu_threads
        self.name = f"ray:{_node_address()}:{os.getpid()}"

    def name_and_pid(self) -> tuple[str, int]:
        return self.name, os.getpid()

    def make(self, request_data: dict, shipped: tuple | None = None) -> dict:
        from engine.batch.local import describe_failure, make_one
        from engine.context import JobContext

        started = time.perf_counter()
        request = GenerationRequest.from_dict(request_data)
        if not request.runtime.cpu_threads:
            runtime = request.runtime.replace(cpu_threads=self.cpu_threads)
            request = request.replace(runtime=runtime)
        try:
            if shipped is not None:
                request = request.replace(model=str(unpack_shipped(*shipped)))
            ctx = JobContext(0, lambda event: None, services=self.services)
            image, metadata, info = make_one(request, ctx)
        except Exception as exc:  # the request's own failure, reported to the driver
            message, kind = describe_failure(exc)
            return _failure(kind, message, self.name, time.perf_counter() - started)
        if shipped is not None:  # say what the user asked for, not the node's temp copy
            metadata["model"] = request_data.get("model", "")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return {
            "ok": True,
            "png": buffer.getvalue(),
            "metadata": metadata,
            "device": str(info.get("device", "")),
            "worker": self.name,
            "seconds": time.perf_counter() - started,
        }


def _node_address() -> str:
    """This host and its Ray node, for the manifest's worker column."""
    import socket

    host = socket.gethostname()
    try:
        import ray

        return f"{host}:{ray.get_runtime_context().get_node_id()[:8]}"
    except Exception:  # outside Ray (the actor class used directly)
        return host


# -- shipping models --------------------------------------------------------------------------
def pack_model(path: Path) -> tuple[str, str, bytes]:
    """(digest, name, tar bytes) of a model file or folder."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(path), arcname=path.name)
    data = buffer.getvalue()
    return hashlib.sha256(data).hexdigest()[:24], path.name, data


def unpack_shipped(digest: str, name: str, data_ref: Any) -> Path:
    """The node-local copy of a shipped model, unpacked once per node (a file lock keeps two
    actors on one node from unpacking it twice)."""
    root = Path(tempfile.gettempdir()) / SHIPPED_DIR_NAME / digest
    target = root / name
    done = root / ".complete"
    if done.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        lock(handle, blocking=True)
        if not done.exists():
            import ray

            data = data_ref if isinstance(data_ref, bytes) else ray.get(data_ref)
            with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
                try:
                    tar.extractall(root, filter="data")  # no paths outside `root`
                except TypeError:  # Python before 3.10.12 has no filters; the tar is ours
                    tar.extractall(root)
            done.touch()
    return target


# -- the driver -------------------------------------------------------------------------------
@dataclass
class _Slot:
    handle: Any
    name: str = ""
    model: str | None = None
    in_flight: int = 0
    alive: bool = True


class RayBatch:
    """Runs a BatchRequest's pending items on Ray actors; the driver writes every result."""

    def __init__(
        self,
        request: BatchRequest,
        options: RayOptions,
        *,
        on_progress: Callable[[int, int, dict], None] | None = None,
        on_announce: Callable[[int, int], None] | None = None,
        on_result: Callable[[dict], None] | None = None,
    ):
        self.request = request
        self.options = options
        self.on_progress = on_progress or (lambda done, total, info: None)
        self.on_announce = on_announce or (lambda total, pending: None)
        self.on_result = on_result or (lambda row: None)
        self.slots: list[_Slot] = []
        self._started_ray = False
        self._stopped = False

    @property
    def actors(self) -> list:
        return [slot.handle for slot in self.slots if slot.alive]

    def stop(self) -> None:
        """Stop handing out work and end the actors (what is in flight is lost; a rerun makes
        it)."""
        self._stopped = True
        self._end_actors()

    def close(self) -> None:
        self._end_actors()
        if self._started_ray:
            import_ray().shutdown()
            self._started_ray = False

    def run(self) -> dict:
        items = load_spec(self.request.spec)
        with Manifest(self.request.out_dir) as manifest:
            pending = manifest.pending(items)
            self.on_announce(len(items), len(pending))
            meter = RateMeter(total=len(pending))
            if pending:
                self._started_ray = connect(self.options.address)
                self._start_actors(len(pending))
                self._dispatch_all(pending, BatchWriter(manifest), meter)
        return {
            "items": len(items),
            "skipped": len(items) - len(pending),
            "done": meter.done,
            "failed": meter.failed,
            "out_dir": str(manifest.out_dir),
            "manifest": str(manifest.path),
            "seconds": round(time.perf_counter() - meter.started, 3),
            "actors": len(self.slots),
        }

    # -- actors -----------------------------------------------------------------------------
    def _start_actors(self, pending: int) -> None:
        ray = import_ray()
        count, cpus, gpus = actor_shape(
            ray.cluster_resources(),
            actors=self.options.actors,
            cpus_per_actor=self.options.cpus_per_actor,
            use_gpus=self.request.runtime.device.value != "cpu",
        )
        remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0)(BatchActor)
        threads = self.request.runtime.cpu_threads or max(1, int(cpus))
        handles = [remote.remote(threads) for _ in range(min(count, pending))]
        self.slots = [_Slot(h) for h in handles]  # known now, so stop() can end them
        try:
            names = ray.get([h.name_and_pid.remote() for h in handles], timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise ModelError(
                f"The Ray cluster did not start {len(handles)} batch workers within "
                f"{START_TIMEOUT_S} s: it may lack the CPUs/GPUs they ask for, or Easel is not "
                "installed on its nodes. Try --actors 1 or a smaller --cpus-per-actor."
            ) from None
        for slot, (name, _pid) in zip(self.slots, names, strict=True):
            slot.name = name

    def _end_actors(self) -> None:
        if not self.slots:
            return
        ray = import_ray()
        for slot in self.slots:
            if slot.alive:
                try:
                    ray.kill(slot.handle)
                except Exception:  # already gone
                    pass
                slot.alive = False

    # -- handing out work and collecting results ----------------------------------------------
    def _dispatch_all(self, pending: list[BatchItem], writer: BatchWriter, meter: RateMeter):
        ray = import_ray()
        queues = _queues_by_model(pending)
        shipped = self._ship(queues) if self.options.ship_models else {}
        in_flight: dict[Any, tuple[_Slot, BatchItem, float]] = {}
        attempts: collections.Counter = collections.Counter()
        self.on_progress(0, len(pending), meter.info())
        while not self._stopped and (in_flight or any(queues.values())):
            self._fill(queues, in_flight, shipped)
            if not in_flight:
                raise ModelError(
                    "Every Ray worker of the batch died; what finished is in the manifest. "
                    "Check the cluster (memory, GPUs) and run the same command again."
                )
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_S)
            for ref in ready:
                slot, item, started_at = in_flight.pop(ref)
                slot.in_flight -= 1
                outcome = self._outcome(ref, slot)
                if outcome is None:  # the actor died: someone else makes it
                    attempts[item.key] += 1
                    if attempts[item.key] < MAX_ATTEMPTS:
                        queues.setdefault(item.request.model, collections.deque()).appendleft(item)
                        continue
                    message = (
                        f"The worker died {MAX_ATTEMPTS} times while making this image; "
                        "it may need more memory than a worker has."
                    )
                    outcome = _failure("WorkerDied", message, slot.name)
                row = self._record(item, outcome, writer, started_at)
                meter.add(ok=outcome["ok"])
                self.on_result(row)
                self.on_progress(meter.finished, len(pending), meter.info())

    def _fill(self, queues, in_flight, shipped) -> None:
        for slot in self.slots:
            while slot.alive and slot.in_flight < IN_FLIGHT_PER_ACTOR:
                item = _next_for(slot, queues)
                if item is None:
                    return
                ship = shipped.get(item.request.model)
                request = item.request.replace(runtime=self.request.runtime)
                ref = slot.handle.make.remote(request.to_dict(), ship)
                in_flight[ref] = (slot, item, time.time())
                slot.in_flight += 1

    def _outcome(self, ref, slot: _Slot) -> dict | None:
        ray = import_ray()
        try:
            return ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
            slot.alive = False
            return None
        except ray.exceptions.RayTaskError as exc:  # a bug outside the actor's own guard
            return _failure("internal", f"Unexpected error on the worker: {exc}", slot.name)

    def _record(self, item: BatchItem, outcome: dict, writer: BatchWriter, started_at) -> dict:
        worker = outcome["worker"]
        common = {"started_at": started_at, "seconds": outcome["seconds"], "worker": worker}
        if not outcome["ok"]:
            return writer.write_failure(item, outcome["message"], outcome["kind"], **common)
        from PIL import Image

        image = Image.open(io.BytesIO(outcome["png"]))
        image.load()
        return writer.write_image(
            item, image, outcome["metadata"], device=outcome["device"], **common
        )

    def _ship(self, queues: dict) -> dict[str, tuple]:
        """model reference -> (digest, name, object ref) for every model that has a path here."""
        ray = import_ray()
        shipped = {}
        for model in queues:
            path = _local_model_path(model)
            if path is not None:
                digest, name, data = pack_model(path)
                shipped[model] = (digest, name, ray.put(data))
        return shipped


def actor_shape(
    resources: dict, *, actors: int, cpus_per_actor: int, use_gpus: bool
) -> tuple[int, float, float]:
    """(actors, CPUs each, GPUs each) that fit the cluster: one actor per GPU by default, else
    one per `cpus_per_actor` cores; an asked-for count is shared out (fractions are fine for
    Ray), so every actor can be scheduled and none waits forever for resources."""
    gpus = int(resources.get("GPU", 0)) if use_gpus else 0
    cpus = max(1.0, float(resources.get("CPU", 1)))
    if gpus:
        count = actors or gpus
        return count, min(1.0, cpus / count), min(1.0, gpus / count)
    per_actor = min(float(max(1, cpus_per_actor)), cpus)
    count = actors or max(1, int(cpus // per_actor))
    return count, min(per_actor, cpus / count), 0.0


def _failure(kind: str, message: str, worker: str, seconds: float = 0.0) -> dict:
    return {"ok": False, "kind": kind, "message": message, "worker": worker, "seconds": seconds}


def _queues_by_model(items: list[BatchItem]) -> dict[str, collections.deque]:
    queues: dict[str, collections.deque] = {}
    for item in items:
        queues.setdefault(item.request.model, collections.deque()).append(item)
    return queues


def _next_for(slot: _Slot, queues: dict[str, collections.deque]) -> BatchItem | None:
    """The actor's current model while it has work, else the model with the most work left."""
    if slot.model is not None and queues.get(slot.model):
        return queues[slot.model].popleft()
    busiest = max(queues, key=lambda m: len(queues[m]), default=None)
    if busiest is None or not queues[busiest]:
        return None
    slot.model = busiest
    return queues[busiest].popleft()


def _local_model_path(model: str) -> Path | None:
    """Where a model lives on the driver, or None for built-ins (every install has them) and
    models that do not resolve here (their requests fail on the worker with the usual message).
    """
    if not model.strip() or model.startswith("builtin:"):
        return None
    from engine.library.resolve import resolve_model

    try:
        return Path(resolve_model(model).path)
    except EaselError:
        return None
