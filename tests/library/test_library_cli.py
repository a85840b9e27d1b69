"""`easel models ...` and imports: clear output, refused names, nothing written outside."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from engine.errors import InputError, ModelError
from engine.library.importer import import_model
from engine.paths import models_dir

from .builders import sd1_shapes, sdxl_shapes, write_stripped


@pytest.fixture(autouse=True)
def no_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_probe_command(tmp_path, capsys):
    path = write_stripped(tmp_path / "whatever.safetensors", sdxl_shapes(9))
    assert main(["models", "probe", str(path)]) == 0
    out = capsys.readouterr().out
    assert "SDXL checkpoint (inpaint)" in out and "'sdxl-inpaint' settings" in out
    assert main(["models", "probe", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["config"] == "sdxl-inpaint"
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"12345678")
    assert main(["models", "probe", str(broken)]) == 3
    assert "broken: the header claims" in capsys.readouterr().out


def test_add_folder_scan_and_list(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    write_stripped(folder / "a.safetensors", sd1_shapes())
    (folder / "b.safetensors").write_bytes(b"")
    assert main(["models", "add-folder", str(folder)]) == 0
    assert "1 broken" in capsys.readouterr().out  # plus any built-in models
    assert main(["models", "scan"]) == 0
    assert "0 new, 0 updated" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint" in out and "sd1" in out and "the file is empty" in out
    assert main(["models", "list", "--json", "--kind", "checkpoint"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["a"]
    assert main(["models", "add-folder", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_import_copies_or_links_and_refuses_unsafe_names(tmp_path, capsys):
    source = write_stripped(tmp_path / "src.safetensors", sd1_shapes())
    outside_before = _files(tmp_path)
    assert main(["models", "import", str(source), "--name", "my-model.safetensors"]) == 0
    assert "Imported 'my-model' (id 1): checkpoint sd1" in capsys.readouterr().out
    copied = models_dir() / "my-model.safetensors"
    assert copied.read_bytes() == source.read_bytes() and not copied.is_symlink()

    record = import_model(source, name="links/linked.safetensors", mode="link")
    assert (models_dir() / "links/linked.safetensors").is_symlink() and record.base == "sd1"

    for bad in ("../escape.safetensors", "a/../../escape.safetensors", str(tmp_path / "abs.st")):
        assert main(["models", "import", str(source), "--name", bad]) == 2
        err = capsys.readouterr().err
        assert "'..'" in err or "absolute path" in err
    with pytest.raises(InputError, match="already exists"):
        import_model(source, name="my-model.safetensors")
    assert _files(tmp_path) == outside_before  # nothing written next to the source
    assert source.exists()

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"")
    with pytest.raises(ModelError, match="not imported: the file is empty"):
        import_model(broken)


def test_import_with_conversion_to_a_diffusers_folder(tmp_path, no_network):
    import torch
    from safetensors.torch import save_file

    from engine.library.probe import probe_path

    from .builders import save_config_folder, tiny_sd_pipeline
    from .ldm_layout import pipeline_to_ldm

    torch.set_num_threads(1)
    pipe = tiny_sd_pipeline()
    checkpoint = tmp_path / "tiny.safetensors"
    save_file(pipeline_to_ldm(pipe), checkpoint)
    config = save_config_folder(pipe, tmp_path / "config")
    record = import_model(checkpoint, convert=True, config=config)
    folder = models_dir() / "tiny"
    assert record.path == str(folder.resolve()) and record.layout == "diffusers"
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert probe_path(folder).layout == "diffusers"
    assert not [p for p in models_dir().iterdir() if p.name.startswith(".")]


def test_download_command_without_network(no_network, capsys):
    assert main(["models", "download", "owner/some-model"]) == 3
    assert capsys.readouterr().err.startswith("error: No network:")
