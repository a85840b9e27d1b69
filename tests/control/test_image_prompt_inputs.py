"""Image prompts' bad input (another base's adapter, no image encoder, a damaged picture), the
library layout, `easel generate --ip-adapter`, and the request -> PNG -> reuse round trip."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from engine.api_control import ImagePrompt
from engine.events import Failed
from tests.control.conftest import RUNTIME, make_request, pixels, run
from tests.control.conftest import image_prompt as prompt


def refused(engine, req) -> str:
    final = engine.run(req, timeout=300)
    assert isinstance(final, Failed), final
    return final.message


def full_width_adapter(path, width: int, layers: int, embed: int = 1024):
    """An IP-Adapter with a published family's widths (768 SD 1.x, 2048 SDXL): only the
    tensors the probe reads, zeros."""
    tensors = {"image_proj.proj.weight": torch.zeros(4 * width, embed)}
    for index in range(layers):
        for name in ("to_k_ip", "to_v_ip"):
            tensors[f"ip_adapter.{2 * index + 1}.{name}.weight"] = torch.zeros(64, width)
    save_file(tensors, str(path))
    return path


def test_an_adapter_for_another_base_is_refused_by_name(
    engine, control_models, ip_models, references, tmp_path
):
    sdxl_adapter = full_width_adapter(tmp_path / "ip-adapter_sdxl.safetensors", 2048, 70)
    sd15_adapter = full_width_adapter(tmp_path / "ip-adapter_sd15.safetensors", 768, 16)
    message = refused(
        engine,
        make_request(control_models["sd1"], image_prompts=[prompt(references, sdxl_adapter)]),
    )
    assert "'ip-adapter_sdxl': this IP-Adapter is for SDXL; the model is SD 1.5" in message
    message = refused(
        engine,
        make_request(control_models["sdxl"], image_prompts=[prompt(references, sd15_adapter)]),
    )
    assert "this IP-Adapter is for SD 1.5; the model is SDXL" in message
    # a custom width the probe cannot name is refused from the UNet's layers
    message = refused(
        engine,
        make_request(
            control_models["sdxl"], image_prompts=[prompt(references, ip_models["ip_sd1"])]
        ),
    )
    assert "this IP-Adapter is for another base model; the model is SDXL" in message
    assert "4 cross-attention layers of text width 32, the model's UNet 8 of width 64" in message
    # the engine keeps serving, and the refused adapter left nothing behind
    plain = run(engine, make_request(control_models["sdxl"]))
    assert np.array_equal(pixels(plain), pixels(run(engine, make_request(control_models["sdxl"]))))


def test_a_missing_image_encoder_says_where_to_put_one(
    engine, control_models, ip_models, references, isolated_data_dir
):
    alone = ip_models["ip_sd1_alone"]
    req = make_request(control_models["sd1"], image_prompts=[prompt(references, alone)])
    message = refused(engine, req)
    assert message.startswith("No CLIP image encoder for the IP-Adapter 'ip-adapter-alone'")
    assert "image embeddings 16 wide" in message
    assert str(isolated_data_dir / "models" / "clip_vision") in message
    assert "easel models scan" in message
    # put there, it is found without a rescan
    shutil.copytree(ip_models["encoder"], isolated_data_dir / "models" / "clip_vision" / "vit-tiny")
    result = run(engine, req)
    assert result.info["image_encoder"] == "vit-tiny"


def test_an_encoder_of_the_wrong_width_is_not_used(
    engine, control_models, ip_models, references, isolated_data_dir
):
    from tests.helpers.tiny_control import build_image_encoder

    build_image_encoder(isolated_data_dir / "models" / "clip_vision" / "wide", projection_dim=24)
    alone = ip_models["ip_sd1_alone"]
    message = refused(
        engine, make_request(control_models["sd1"], image_prompts=[prompt(references, alone)])
    )
    assert "No CLIP image encoder" in message and "16 wide" in message


def test_the_library_supplies_the_adapter_and_the_encoder(
    engine, control_models, ip_models, references, isolated_data_dir
):
    from engine.library.scan import scan_library
    from engine.paths import models_dir

    models = models_dir()
    shutil.copy(ip_models["ip_sd1_alone"], models / "ip-adapter-alone.safetensors")
    shutil.copytree(ip_models["encoder"], models / "encoders" / "my-vit")
    scan_library(include_hf_cache=False)
    req = make_request(
        control_models["sd1"],
        image_prompts=[ImagePrompt(image=str(references / "warm.png"), weight=0.8)],
    )
    result = run(engine, req)  # no adapter named: the library's only one for SD 1.5
    assert result.info["ip_adapters"] == ["ip-adapter-alone"]
    assert result.info["image_encoder"] == "my-vit"
    by_path = run(
        engine,
        make_request(
            control_models["sd1"],
            image_prompts=[prompt(references, models / "ip-adapter-alone.safetensors")],
        ),
    )
    assert np.array_equal(pixels(result), pixels(by_path))


def test_no_adapter_in_the_library_is_said(engine, control_models, references):
    req = make_request(
        control_models["sd1"], image_prompts=[ImagePrompt(image=str(references / "warm.png"))]
    )
    # the tiny model's widths name no published base, so the message names none either
    assert "No IP-Adapter in the library. Put one in the models folder" in refused(engine, req)


def test_a_damaged_reference_picture_gives_one_clear_message(
    engine, control_models, ip_models, references
):
    adapter = ip_models["ip_sd1"]
    req = make_request(
        control_models["sd1"],
        image_prompts=[prompt(references, adapter), prompt(references, adapter, "broken.png")],
    )
    message = refused(engine, req)
    assert "image prompt 2" in message and "broken.png" in message
    assert "Traceback" not in message and len(message.splitlines()) == 1
    missing = make_request(
        control_models["sd1"], image_prompts=[prompt(references, adapter, "nowhere.png")]
    )
    assert "nowhere.png" in refused(engine, missing)
    run(engine, make_request(control_models["sd1"]))


def test_what_is_not_an_ip_adapter_is_refused(engine, control_models, references, tmp_path):
    cn = control_models["cn_sd1"]["file"]
    message = refused(
        engine, make_request(control_models["sd1"], image_prompts=[prompt(references, cn)])
    )
    assert "not an IP-Adapter" in message
    missing = refused(
        engine,
        make_request(control_models["sd1"], image_prompts=[prompt(references, "/no/such/ip.bin")]),
    )
    assert "IP-Adapter model not found: '/no/such/ip.bin'" in missing
    faceid = tmp_path / "ip-adapter-faceid_sd15.safetensors"
    save_file(
        {
            "image_proj.proj.0.weight": torch.zeros(1024, 512),
            "image_proj.proj.2.weight": torch.zeros(3072, 1024),
            "image_proj.norm.weight": torch.zeros(768),
            "ip_adapter.1.to_k_ip.weight": torch.zeros(320, 768),
            "ip_adapter.1.to_k_lora.down.weight": torch.zeros(128, 320),
        },
        str(faceid),
    )
    assert "FaceID" in refused(
        engine, make_request(control_models["sd1"], image_prompts=[prompt(references, faceid)])
    )


def test_a_pickled_bin_adapter_runs_like_its_safetensors_twin(
    engine, control_models, ip_models, references, tmp_path
):
    from safetensors.torch import load_file

    from engine.library.probe import probe_path

    adapter = ip_models["ip_sd1"]
    flat = load_file(str(adapter))
    nested = {part: {} for part in ("image_proj", "ip_adapter")}
    for key, value in flat.items():
        part, _, rest = key.partition(".")
        nested[part][rest] = value
    folder = tmp_path / "h94"
    shutil.copytree(adapter.parent / "image_encoder", folder / "image_encoder")
    binary = folder / "ip-adapter-tiny.bin"
    torch.save(nested, binary)  # how h94 ships the .bin files
    assert probe_path(binary).kind == "ip_adapter"
    ours = run(
        engine, make_request(control_models["sd1"], image_prompts=[prompt(references, binary)])
    )
    twin = run(
        engine, make_request(control_models["sd1"], image_prompts=[prompt(references, adapter)])
    )
    assert np.array_equal(pixels(ours), pixels(twin))


def test_tiny_adapters_and_encoders_probe_from_their_tensors(ip_models):
    from engine.library.probe import probe_path

    adapter = probe_path(ip_models["ip_sd1"])
    assert (adapter.kind, adapter.base) == ("ip_adapter", "")  # width 32: no published family
    assert adapter.details == {"context_dim": 32, "image_embed_dim": 16}
    encoder = probe_path(ip_models["encoder"])
    assert encoder.kind == "image_encoder" and encoder.details["projection_dim"] == 16


# -- the CLI and the metadata round trip ------------------------------------------------------
def cli_args(control_models, out, *extra):
    args = ["generate", "an apple", "--model", str(control_models["sd1"]), "--steps", "2"]
    args += ["--width", "64", "--height", "64", "--seed", "3", "--device", "cpu"]
    args += ["--precision", "fp32", "--threads", "1", "--quiet", "-o", str(out)]
    return args + list(extra)


def test_cli_ip_adapter_flag_and_the_png_round_trip(
    engine, control_models, ip_models, references, tmp_path
):
    from desktop.cli import main
    from engine.metadata.detect import read_image_settings

    adapter = ip_models["ip_sd1"]
    out = tmp_path / "out.png"
    plain_out = tmp_path / "plain.png"
    image = references / "warm.png"
    assert main(cli_args(control_models, plain_out)) == 0
    args = cli_args(control_models, out, "--ip-adapter", f"{image}:0.6")
    assert main(args + ["--ip-adapter-model", str(adapter)]) == 0
    written = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
    assert np.abs(written - np.asarray(Image.open(plain_out)).astype(np.int16)).mean() > 1.0
    text = Image.open(out).info["parameters"]
    assert 'ControlNet 0: "Module: ip-adapter_clip_sd15, Model: ip-adapter-tiny-sd1' in text
    assert "Weight: 0.6" in text
    # reuse: the PNG's request runs again to the same pixels
    request = read_image_settings(out).request
    assert request.image_prompts == (ImagePrompt(image=str(image), weight=0.6, model=str(adapter)),)
    again = run(engine, request.replace(runtime=RUNTIME))
    assert np.array_equal(pixels(again), written)


def test_cli_without_an_ip_adapter_in_the_library_says_so(control_models, references, capsys):
    from desktop.cli import main

    code = main(
        ["generate", "x", "--model", str(control_models["sd1"]), "--quiet"]
        + ["--ip-adapter", str(references / "warm.png")]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert "No IP-Adapter" in err and "--ip-adapter-model" in err


@pytest.mark.parametrize(
    ("text", "weight"), [("ref.png", 0.6), ("ref.png:0.3", 0.3), ("pics/ref.png:1.5", 1.5)]
)
def test_cli_ip_adapter_values(text, weight):
    import argparse

    from engine.cli.control_args import add_control_arguments, control_fields

    parser = argparse.ArgumentParser()
    add_control_arguments(parser)
    args = parser.parse_args(["--ip-adapter", text, "--ip-adapter-model", "/m/ip.safetensors"])
    (image_prompt,) = control_fields(args, "sd1")["image_prompts"]
    assert image_prompt.weight == weight
    assert image_prompt.image.endswith("ref.png") and image_prompt.model == "/m/ip.safetensors"


def test_an_incomplete_adapter_is_one_clear_message_and_leaves_the_model_clean(
    engine, control_models, ip_models, references
):
    from safetensors.torch import load_file

    from tests.helpers.tiny_control import ip_adapter_tensors

    model = control_models["sd1"]
    plain = run(engine, make_request(model))
    folder = ip_models["ip_sd1"].parent  # beside the tiny encoder
    short = {
        k: v
        for k, v in ip_adapter_tensors(model, image_embed_dim=32, plus=True).items()
        if not k.startswith("image_proj.layers.3.")  # a Plus resampler with 3 of its 4 layers
    }
    save_file(short, str(folder / "ip-adapter-plus-short.safetensors"))
    no_value = dict(load_file(str(ip_models["ip_sd1"])))
    del no_value["ip_adapter.3.to_v_ip.weight"]
    save_file(no_value, str(folder / "ip-adapter-no-value.safetensors"))
    for name in ("ip-adapter-plus-short", "ip-adapter-no-value"):
        adapter = folder / f"{name}.safetensors"
        message = refused(engine, make_request(model, image_prompts=[prompt(references, adapter)]))
        assert message.startswith(f"The IP-Adapter '{name}' could not be loaded"), message
        assert "incomplete, damaged" in message
        assert np.array_equal(pixels(run(engine, make_request(model))), pixels(plain))


def test_cli_control_ip_adapter_and_hires_together(control_models, ip_models, references, tmp_path):
    """The issue's own command line: a canny unit, an image prompt and the hires fix in one
    job, all three written into the PNG's settings."""
    from desktop.cli import main
    from engine.metadata.detect import read_image_settings

    out = tmp_path / "all.png"
    args = cli_args(control_models, out, "--width", "128", "--height", "128")
    args += ["--control", f"canny:{references / 'warm.png'}:0.8"]
    args += ["--control-model", str(ip_models["cn_sd1_gentle"])]
    args += ["--ip-adapter", f"{references / 'warm.png'}:0.6"]
    args += ["--ip-adapter-model", str(ip_models["ip_sd1"]), "--hires", "2x"]
    assert main(args) == 0
    assert Image.open(out).size == (128, 128)
    request = read_image_settings(out).request
    assert request.control[0].preprocessor == "canny" and request.control[0].weight == 0.8
    assert request.image_prompts[0].weight == 0.6
    assert request.hires is not None and request.hires.scale == 2.0
