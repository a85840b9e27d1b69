"""The same batch on a local Ray cluster (2 CPUs, 2 actors, bound to 127.0.0.1, no dashboard):
the same images as the local run, an actor killed mid-batch still gives every request exactly
once, and --ship-models sends a model folder to the node instead of relying on its path."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from engine.api import RuntimeOptions
from engine.batch.ray_runner import SHIPPED_DIR_NAME, RayBatch, RayOptions
from engine.batch.request import BatchRequest
from engine.batch.spec import load_spec
from engine.paths import resource
from tests.batch.helpers import done_rows, images_by_request, write_grid

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cluster]')")

ONE_THREAD = RuntimeOptions(cpu_threads=1)
TWO_ACTORS = RayOptions(address=None, actors=2, cpus_per_actor=1)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_images(tmp_path_factory):
    """The reference: the same grid made by the in-process engine."""
    from engine.cli import main as cli_main

    folder = tmp_path_factory.mktemp("local")
    out = folder / "out"
    spec = write_grid(folder)
    assert cli_main(["batch", str(spec), "-o", str(out), "--threads", "1", "--quiet"]) == 0
    return images_by_request(out)


def test_a_ray_batch_gives_the_local_images(cluster, local_images, tmp_path):
    out = tmp_path / "out"
    request = BatchRequest(spec=str(write_grid(tmp_path)), out_dir=str(out), runtime=ONE_THREAD)
    batch = RayBatch(request, TWO_ACTORS)
    try:
        summary = batch.run()
    finally:
        batch.close()
    assert (summary["done"], summary["failed"], summary["actors"]) == (12, 0, 2)
    made = images_by_request(out)
    assert made.keys() == local_images.keys()
    for key, image in made.items():
        assert np.array_equal(image, local_images[key]), key
    workers = {row["worker"] for row in done_rows(out)}
    assert len(workers) == 2 and all(w.startswith("ray:") for w in workers)


def test_killing_an_actor_mid_batch_still_makes_every_request_once(cluster, tmp_path):
    out = tmp_path / "out"
    spec = write_grid(tmp_path)
    request = BatchRequest(spec=str(spec), out_dir=str(out), runtime=ONE_THREAD)
    killed: list = []

    def kill_one(row) -> None:
        if not killed:  # after the first image: the other actor's requests are in flight
            victim = batch.actors[0]
            ray.kill(victim)
            killed.append(victim)

    batch = RayBatch(request, TWO_ACTORS, on_result=kill_one)
    try:
        summary = batch.run()
    finally:
        batch.close()
    assert killed and summary["done"] == 12 and summary["failed"] == 0
    keys = [row["key"] for row in done_rows(out)]
    assert len(keys) == len(set(keys)) == 12
    assert set(keys) == {item.key for item in load_spec(spec)}
    assert len(list(out.glob("*.png"))) == 12


def test_ship_models_sends_the_model_folder_to_the_node(cluster, tmp_path):
    model = tmp_path / "models" / "my-emoji-ldm"
    shutil.copytree(
        resource("models", "emoji-ldm"), model, ignore=shutil.ignore_patterns("samples")
    )
    spec = tmp_path / "grid.toml"
    spec.write_text(
        'steps = 4\nwidth = 64\nheight = 64\nsampler = "DDIM"\n'
        f"[grid]\nmodels = [{str(model)!r}]\nprompts = ['a rocket']\nseeds = '1-2'\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    request = BatchRequest(spec=str(spec), out_dir=str(out), runtime=ONE_THREAD)
    options = RayOptions(address=None, actors=1, cpus_per_actor=1, ship_models=True)
    batch = RayBatch(request, options)
    try:
        assert batch.run()["done"] == 2
    finally:
        batch.close()
    from engine.metadata import read_png_text

    for row in done_rows(out):
        text = read_png_text(out / row["file"])["easel"]
        assert SHIPPED_DIR_NAME in text  # the node's copy made it...
        assert f'"model": "{model}"' in text  # ...and the metadata names the user's model
