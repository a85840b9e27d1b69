"""Training throughput and sampling time of Easel's GAN/VAE trainers against plain loops.

    .venv/bin/python bench/training_throughput.py [--families dcgan,vae] [--resolutions 32,64]
        [--steps 12] [--rounds 2] [--threads 1] [--json out.json]

For each family and resolution, the same model (same config, same initial weights) trains on
the same in-memory pictures with the same batch size, once through Easel (`run_training`: data
sampler, progress events, checkpoint-free until the end) and once through a plain loop written
the obvious way below (index a tensor, forward, loss, backward, step). Throughput is images per
second over the steady-state steps (the first `WARMUP` steps are not timed in either: Easel's
from its Progress events' timestamps). Rounds alternate which goes first; the best round of each
counts (the machine is shared, the best is the least disturbed). Images/s are given by the wall
clock and by this process's CPU time (steadier when other programs load the machine). Target
(issues 5 and 14): Easel within 10% of the plain loop. Sampling: time for a batch of 16 through
`generate_native` (CycleGAN: one picture of the resolution, tiled path).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

WARMUP = 3
BATCH = {"cyclegan": 4}
DEFAULT_BATCH = 16
#: bench-sized configs: big enough that the maths dominates, small enough for a 2-core CPU
CONFIGS = {
    "dcgan": {"z_dim": 64, "g_width": 32, "d_width": 32},
    "stylegan": {
        "z_dim": 64,
        "w_dim": 64,
        "mapping_layers": 2,
        "channel_base": 2048,
        "channel_max": 64,
    },  # fmt: skip
    "cyclegan": {"g_width": 16, "d_width": 16, "resnet_blocks": 3},
    "vae": {"width": 32, "latent_dim": 64},
    "beta-vae": {"width": 32, "latent_dim": 64},
    "nvae": {"width": 16, "latent_channels": 8, "groups_per_scale": 1},
    # DALL-E (issue 14), its two stages apart: "dalle" is the transformer stage (the tokenizer
    # stage skipped; every picture tokenised once at the first step, a warm-up step), "dalle-vq"
    # the VQ tokenizer stage alone
    "dalle": {"tokenizer_steps": 0, "tokenizer": {"channels": [32, 64]}},
    "dalle-vq": {"tokenizer_steps": 10**6, "tokenizer": {"channels": [32, 64]}},
}
#: bench names that train another family's code
FAMILY = {"dalle-vq": "dalle"}


def write_pictures(folder: Path, count: int, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


# -- Easel --------------------------------------------------------------------------------------
class Timestamps:
    """A JobContext sink that notes when each Progress event arrived (wall and CPU clocks)."""

    def __init__(self):
        self.times: list[tuple[float, float]] = []

    def __call__(self, event) -> None:
        if type(event).__name__ == "Progress":
            self.times.append(clocks())


def clocks() -> tuple[float, float]:
    """(wall, CPU) seconds. This process's CPU time barely moves when other programs load the
    machine (they slow the wall clock, not our work), so it compares two loops more fairly on a
    shared computer; both are reported."""
    return time.perf_counter(), time.process_time()


def rates(times: list[tuple[float, float]], batch: int) -> tuple[float, float]:
    """Images/s by wall clock and by CPU clock over the steps after the warm-up."""
    timed = times[WARMUP - 1 :]  # from the end of the last warm-up step
    images = (len(timed) - 1) * batch
    return (
        images / (timed[-1][0] - timed[0][0]),
        images / (timed[-1][1] - timed[0][1]),
    )


def easel_images_per_s(family, data, out, steps, batch, threads) -> tuple[float, float]:
    from engine.api import RuntimeOptions, TrainingRequest
    from engine.context import JobContext
    from engine.training.runner import run_training

    request = TrainingRequest(
        family=FAMILY.get(family, family), data_dir=str(data),
        data_dir_b=str(data) if family == "cyclegan" else None,
        out_dir=str(out), steps=steps, resolution=resolution_of(data), batch_size=batch,
        sample_every=10**9, flip=False, extras=CONFIGS[family],
        runtime=RuntimeOptions(cpu_threads=threads),
    )  # fmt: skip
    sink = Timestamps()
    run_training(request, JobContext(1, sink))
    return rates(sink.times, batch)


def resolution_of(data: Path) -> int:
    with Image.open(next(data.iterdir())) as image:
        return image.width


# -- the plain loops ------------------------------------------------------------------------------
def plain_images_per_s(family, data, steps, batch) -> tuple[float, float]:
    """The obvious loop: pictures in one tensor, random batches, the family's losses inline."""
    from engine.families.registry import full_config
    from engine.training.data import load_training_data

    pictures = load_training_data(str(data), resolution_of(data))
    shape = {"resolution": pictures.resolution, "channels": 3, "classes": []}
    config = full_config(FAMILY.get(family, family), {**CONFIGS[family], **shape})
    torch.manual_seed(0)
    images = pictures.images.float() / 127.5 - 1
    if family == "dalle":
        return plain_dalle_transformer(config, pictures, images, steps, batch)
    step = make_plain_step(family, config, batch)
    times = []
    for _ in range(steps):
        real = images[torch.randint(len(images), (batch,))]
        other = images[torch.randint(len(images), (batch,))]
        step(real, other)
        times.append(clocks())
    return rates(times, batch)


def make_plain_step(family, config, batch):
    if family == "dalle-vq":
        return plain_dalle_tokenizer(config)
    if family == "dcgan":
        return plain_dcgan(config)
    if family == "stylegan":
        return plain_stylegan(config)
    if family == "cyclegan":
        return plain_cyclegan(config)
    if family == "nvae":
        return plain_nvae(config)
    return plain_vae(config)


def plain_dcgan(config):
    from engine.families import dcgan

    g, d = dcgan.Generator(config), dcgan.Discriminator(config)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def step(real, _):
        fake = g(torch.randn(real.shape[0], config["z_dim"]))
        loss_d = F.softplus(-d(real)).mean() + F.softplus(d(fake.detach())).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-d(fake)).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()

    return step


def plain_stylegan(config):
    import copy

    from engine.families import stylegan

    g, d = stylegan.Generator(config), stylegan.Discriminator(config)
    g_ema = copy.deepcopy(g).requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.0, 0.99))
    counter = [0]

    def noise(shape):
        return torch.randn(shape)

    def step(real, _):
        n = real.shape[0]
        mix = torch.randn(n, g.z_dim) if torch.rand(()) < 0.9 else None
        ws = g.styles(
            torch.randn(n, g.z_dim), mix_z=mix, mix_layer=int(torch.randint(1, g.num_ws, ()))
        )
        with torch.no_grad():
            g.mapping.w_avg.lerp_(ws[:, 0].mean(0), 0.005)
        fake = g.synthesis(ws, noise)
        loss_d = F.softplus(-d(real)).mean() + F.softplus(d(fake.detach())).mean()
        if counter[0] % 4 == 0:  # lazy R1
            real_r = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(d(real_r).sum(), real_r, create_graph=True)
            loss_d = loss_d + grad.pow(2).sum(dim=(1, 2, 3)).mean() * 0.05 * 4
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-d(fake)).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        with torch.no_grad():
            for pe, p in zip(g_ema.parameters(), g.parameters(), strict=True):
                pe.lerp_(p, 0.01)
            for be, b in zip(g_ema.buffers(), g.buffers(), strict=True):
                be.copy_(b)
        counter[0] += 1

    return step


def plain_cyclegan(config):
    from engine.families import cyclegan

    model = cyclegan.CycleGAN(config)
    d_a, d_b = cyclegan.PatchDiscriminator(config), cyclegan.PatchDiscriminator(config)
    opt_g = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(d_a.parameters()) + list(d_b.parameters()), lr=2e-4,
                             betas=(0.5, 0.999))  # fmt: skip
    pools = {"a": [], "b": []}

    def from_pool(name, images):
        out = []
        for image in images.detach():
            pool = pools[name]
            if len(pool) < 50:
                pool.append(image)
                out.append(image)
            elif torch.rand(()) < 0.5:
                index = int(torch.randint(50, ()))
                out.append(pool[index])
                pool[index] = image
            else:
                out.append(image)
        return torch.stack(out)

    def mse(x, target):
        return F.mse_loss(x, torch.full_like(x, target))

    def step(a, b):
        g, f = model.a_to_b, model.b_to_a
        d_a.requires_grad_(False)
        d_b.requires_grad_(False)
        fake_b, fake_a = g(a), f(b)
        loss = mse(d_b(fake_b), 1.0) + mse(d_a(fake_a), 1.0)
        loss = loss + 10 * (F.l1_loss(f(fake_b), a) + F.l1_loss(g(fake_a), b))
        loss = loss + 5 * (F.l1_loss(g(b), b) + F.l1_loss(f(a), a))
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        d_a.requires_grad_(True)
        d_b.requires_grad_(True)
        old_b, old_a = from_pool("b", fake_b), from_pool("a", fake_a)
        loss_d = 0.5 * (mse(d_b(b), 1.0) + mse(d_b(old_b), 0.0))
        loss_d = loss_d + 0.5 * (mse(d_a(a), 1.0) + mse(d_a(old_a), 0.0))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()

    return step


def plain_vae(config):
    from engine.families import vae

    model = vae.VAE(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    beta = float(config["beta"])

    def step(x, _):
        mu, logvar = model.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        x_hat = model.decode(z)
        recon = (x - x_hat).pow(2).flatten(1).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()
        loss = recon + beta * kl
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def plain_nvae(config):
    from engine.families import nvae

    model = nvae.NVAE(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    counter = [0]

    def step(x, _):
        x_hat, kls = model(x, generator=generator)
        recon = (x - x_hat).pow(2).flatten(1).sum(1).mean()
        weight = min(1.0, (counter[0] + 1) / 500)
        loss = recon + weight * sum(k.mean() for k in kls)
        opt.zero_grad()
        loss.backward()
        opt.step()
        counter[0] += 1

    return step


def plain_dalle_tokenizer(config):
    from engine.families import dalle
    from engine.training.diffusion import random_crops

    tokenizer = dalle.build(config).tokenizer
    opt = torch.optim.Adam(tokenizer.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    crop = int(config["tokenizer_crop"])

    def step(x, _):
        loss, _parts = tokenizer.loss(random_crops(x, crop, generator), generator)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def plain_dalle_transformer(config, pictures, images, steps, batch):
    """Tokenise every picture and embed every caption once, then next-token cross-entropy on
    random batches, the caption dropped 15% of the time (the trainer's recipe, written inline)."""
    from engine.families import dalle
    from engine.text.minilm import shared_encoder

    model = dalle.build(config)
    with torch.no_grad():
        tokens = model.tokenizer.encode(images).flatten(1)
    captions = [n.rsplit("/", 1)[-1] for n in pictures.names]
    text = shared_encoder().encode(captions)
    net = model.transformer
    opt = torch.optim.AdamW(net.parameters(), lr=5e-4, betas=(0.9, 0.95), weight_decay=0.01)
    times = []
    for _ in range(steps):
        idx = torch.randint(len(tokens), (batch,))
        prefix = net.prefix(text[idx], batch)
        drop = torch.rand(batch) < 0.15
        prefix = torch.where(drop[:, None, None], net.prefix(None, batch), prefix)
        logits = net(prefix, tokens[idx, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[idx].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        times.append(clocks())
    return rates(times, batch)


# -- sampling -----------------------------------------------------------------------------------
def sampling_seconds(family, model_dir: Path, picture: Path, threads: int) -> float:
    from engine.api import GenerationRequest, RuntimeOptions
    from engine.context import JobContext
    from engine.generate import run_generation

    fields = {"batch_size": 16}
    if family in ("dalle", "dalle-vq"):
        fields["prompt"] = "a red apple"
    if family == "cyclegan":
        fields = {"init_image": str(picture)}
    request = GenerationRequest(model=str(model_dir), runtime=RuntimeOptions(cpu_threads=threads),
                                **fields)  # fmt: skip
    ctx = JobContext(1, lambda event: None)
    run_generation(request, ctx)  # load + warm up (cached afterwards)
    started = time.perf_counter()
    run_generation(request, ctx)
    return time.perf_counter() - started


def bench(family, resolution, args, scratch: Path) -> dict:
    batch = BATCH.get(family, DEFAULT_BATCH)
    data = write_pictures(scratch / f"data{resolution}", 64, resolution)
    easel, plain = [], []
    for round_index in range(args.rounds):
        order = ("easel", "plain") if round_index % 2 == 0 else ("plain", "easel")
        for which in order:
            if which == "easel":
                out = scratch / f"{family}-{resolution}-{round_index}"
                easel.append(easel_images_per_s(family, data, out, args.steps, batch, args.threads))
            else:
                plain.append(plain_images_per_s(family, data, args.steps, batch))
    model_dir = scratch / f"{family}-{resolution}-0"
    sample_s = sampling_seconds(family, model_dir, next(data.iterdir()), args.threads)
    wall_easel, wall_plain = max(r[0] for r in easel), max(r[0] for r in plain)
    cpu_easel, cpu_plain = max(r[1] for r in easel), max(r[1] for r in plain)
    return {
        "family": family,
        "resolution": resolution,
        "batch": batch,
        "easel_images_per_s": round(wall_easel, 2),
        "plain_images_per_s": round(wall_plain, 2),
        "wall_ratio": round(wall_easel / wall_plain, 3),
        "easel_images_per_cpu_s": round(cpu_easel, 2),
        "plain_images_per_cpu_s": round(cpu_plain, 2),
        "cpu_ratio": round(cpu_easel / cpu_plain, 3),
        "sampling_s": round(sample_s, 3),
        "sampled": "1 picture" if family == "cyclegan" else "16 pictures",
    }


def format_row(row: dict) -> str:
    return (
        f"{row['family']:9} {row['resolution']:>4} {row['batch']:>5} "
        f"{row['easel_images_per_s']:>8.1f} {row['plain_images_per_s']:>8.1f} "
        f"{row['wall_ratio']:>6.2f} {row['easel_images_per_cpu_s']:>8.1f} "
        f"{row['plain_images_per_cpu_s']:>8.1f} {row['cpu_ratio']:>6.2f} {row['sampling_s']:>9.3f}"
    )


HEADER = (
    f"{'family':9} {'res':>4} {'batch':>5} {'easel/s':>8} {'plain/s':>8} {'wall':>6} "
    f"{'easel/cpu':>8} {'plain/cpu':>8} {'cpu':>6} {'sample s':>9}"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(CONFIGS))
    parser.add_argument("--resolutions", default="32,64")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(HEADER)
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            for resolution in map(int, args.resolutions.split(",")):
                row = bench(family, resolution, args, Path(tmp))
                rows.append(row)
                print(format_row(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
