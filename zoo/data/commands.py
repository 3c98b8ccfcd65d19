"""`zoo data ...`: data tooling on the command line (today: writing the synthetic dataset in every format)."""

from __future__ import annotations

import argparse

from zoo.data.synth_writer import write_synthetic


def data_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="zoo data", description="Dataset tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synth", help="write the synthetic dataset in every published format")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--num-images", type=int, default=64, help="train images")
    synth.add_argument("--val-images", type=int, default=16, help="val images")
    synth.add_argument("--image-size", type=int, default=64)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--max-expressions", type=int, default=2, help="referring expressions per image")
    synth.add_argument("--max-prompts", type=int, default=3, help="visual prompts per interactive sample")
    args = parser.parse_args(argv)
    out = write_synthetic(
        args.out,
        num_images=args.num_images,
        val_images=args.val_images,
        image_size=args.image_size,
        seed=args.seed,
        max_expressions=args.max_expressions,
        max_prompts=args.max_prompts,
    )
    print(f"wrote {args.num_images} train and {args.val_images} val images in every format to {out}")
