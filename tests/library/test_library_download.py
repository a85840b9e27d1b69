"""Opt-in downloads: file selection, resume after an interruption, cancel, and no network."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from engine.errors import InputError, JobCancelled, ModelError
from engine.library.download import RemoteFile, download_repo, select_files
from engine.paths import models_dir

BIG = os.urandom(2 * 1024 * 1024 + 12345)
FILES = {
    "model_index.json": json.dumps({"_class_name": "StableDiffusionPipeline"}).encode(),
    "unet/diffusion_pytorch_model.safetensors": BIG,
    "unet/diffusion_pytorch_model.bin": b"pickle weights we do not want",
    "flax_model.msgpack": b"not for torch",
}


class HubHandler(BaseHTTPRequestHandler):
    """Just enough of the hub: the revision API and `resolve` with Range requests."""

    server_version = "TinyHub"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        state = self.server.state
        if self.path.startswith("/api/models/owner/tiny/revision/main"):
            siblings = [{"rfilename": n, "size": len(d)} for n, d in FILES.items()]
            siblings.append({"rfilename": "../escape.txt", "size": 1})
            return self._send(200, json.dumps({"siblings": siblings}).encode())
        prefix = "/owner/tiny/resolve/main/"
        name = self.path[len(prefix) :] if self.path.startswith(prefix) else None
        if name not in FILES:
            return self._send(404, b"not found")
        data = FILES[name]
        start = 0
        if self.headers.get("Range"):
            state["ranges"].append(self.headers["Range"])
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name.endswith(".safetensors") and state["cut_after"]:
            self.wfile.write(body[: state["cut_after"]])  # the connection drops mid-file
            state["cut_after"] = 0
            self.close_connection = True
            return
        self.wfile.write(body)

    def _send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def hub():
    server = HTTPServer(("127.0.0.1", 0), HubHandler)
    server.state = {"ranges": [], "cut_after": 0}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _endpoint(server):
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_select_files_skips_unused_formats_and_unsafe_paths():
    files = [RemoteFile(n, len(d)) for n, d in FILES.items()] + [RemoteFile("../x", 1)]
    assert [f.path for f in select_files(files)] == [
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]


def test_interrupted_download_resumes_from_where_it_stopped(hub):
    hub.state["cut_after"] = 1024 * 1024
    with pytest.raises(ModelError, match="interrupted"):
        download_repo("owner/tiny", endpoint=_endpoint(hub))
    part = models_dir() / ".download-tiny/unet/diffusion_pytorch_model.safetensors.part"
    assert part.stat().st_size == 1024 * 1024
    seen = []
    folder = download_repo(
        "owner/tiny", endpoint=_endpoint(hub), progress=lambda done, total, f: seen.append(done)
    )
    assert hub.state["ranges"] == [f"bytes={1024 * 1024}-"]
    assert (folder / "unet/diffusion_pytorch_model.safetensors").read_bytes() == BIG
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]
    assert seen[-1] == len(BIG) + len(FILES["model_index.json"])
    assert not (models_dir() / ".download-tiny").exists()
    with pytest.raises(InputError, match="already exists"):
        download_repo("owner/tiny", endpoint=_endpoint(hub))


def test_cancel_keeps_the_partial_file_for_later(hub):
    current = []

    def cancel():  # the user presses Cancel once the large file is coming in
        return bool(current) and current[-1].endswith(".safetensors")

    with pytest.raises(JobCancelled):
        download_repo(
            "owner/tiny",
            name="again",
            endpoint=_endpoint(hub),
            progress=lambda done, total, name: current.append(name),
            cancel=cancel,
        )
    part = models_dir() / ".download-again/unet/diffusion_pytorch_model.safetensors.part"
    assert 0 < part.stat().st_size < len(BIG)
    folder = download_repo("owner/tiny", name="again", endpoint=_endpoint(hub))
    assert (folder / "unet/diffusion_pytorch_model.safetensors").read_bytes() == BIG
    assert hub.state["ranges"]


def test_missing_repo_and_bad_ids(hub):
    with pytest.raises(ModelError, match="not found"):
        download_repo("owner/other", endpoint=_endpoint(hub))
    for bad in ("no-slash", "a/b/c", "../x"):
        with pytest.raises(InputError, match="owner/model-name"):
            download_repo(bad, endpoint=_endpoint(hub))


def test_no_network_says_so(no_network):
    with pytest.raises(ModelError, match="^No network: could not reach the Hugging Face hub"):
        download_repo("stabilityai/sd-turbo")


def test_download_job_through_the_engine(engine, hub, monkeypatch):
    from engine.api import DownloadRequest
    from engine.events import Progress, Result

    monkeypatch.setenv("HF_ENDPOINT", _endpoint(hub))
    monkeypatch.setenv("HF_HUB_CACHE", str(models_dir() / "no-hf-cache"))
    events = []
    engine.subscribe(events.append)
    final = engine.run(DownloadRequest(repo_id="owner/tiny", name="from-job"), timeout=60)
    assert isinstance(final, Result), final
    assert final.info["path"] == str(models_dir() / "from-job")
    assert final.info["record_id"] is not None
    assert any(isinstance(e, Progress) and e.info.get("stage") == "downloading" for e in events)
    with pytest.raises(InputError, match="owner/model-name"):
        DownloadRequest(repo_id="nonsense")
