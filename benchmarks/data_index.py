"""Index a COCO-sized annotation file: time and peak memory of building the reader's index (targets: 60 s, 4 GiB).

Synthesizes `instances_train2017.json`-sized data (118,287 images, ~860k polygon annotations of COCO's typical
size) and a panoptic JSON of the same size, then indexes each in a fresh process (so the peak resident memory
measured is that of the index alone, plus the interpreter and torch). Masks are never decoded here: readers
decode per sample. Usage: `python benchmarks/data_index.py [--images 118287] [--segments 860001] [--keep DIR]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CATEGORIES = [{"id": i + 1, "name": f"class{i}", "isthing": int(i < 80)} for i in range(133)]


def write_instances(path: Path, images: int, segments: int, seed: int = 0) -> None:
    """Streamed so that writing does not itself need the memory the reader is measured on."""
    rng = np.random.default_rng(seed)
    per_image = rng.multinomial(segments, np.full(images, 1 / images))
    with open(path, "w") as out:
        out.write('{"images": [')
        out.write(",".join(f'{{"id":{i},"file_name":"{i:012d}.jpg","height":480,"width":640}}' for i in range(images)))
        out.write('], "annotations": [')
        ann_id = 0
        first = True
        for image, count in enumerate(per_image):
            for _ in range(count):
                points = int(rng.integers(8, 40)) * 2  # COCO polygons: ~24 vertices on average
                x0, y0 = rng.uniform(0, 500), rng.uniform(0, 350)
                coords = np.round(
                    np.column_stack([x0 + rng.uniform(0, 120, points // 2), y0 + rng.uniform(0, 120, points // 2)]), 2
                )
                polygon = ",".join(f"{v:.2f}" for v in coords.ravel())
                out.write(
                    ("" if first else ",")
                    + f'{{"id":{ann_id},"image_id":{image},"category_id":{int(rng.integers(1, 81))},'
                    f'"segmentation":[[{polygon}]],"area":{rng.uniform(10, 9000):.2f},'
                    f'"bbox":[{x0:.2f},{y0:.2f},120.0,120.0],'
                    f'"iscrowd":0}}'
                )
                first = False
                ann_id += 1
        out.write('], "categories": ' + json.dumps(CATEGORIES) + "}")


def write_panoptic(path: Path, images: int, segments: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    per_image = rng.multinomial(segments, np.full(images, 1 / images))
    with open(path, "w") as out:
        out.write('{"images": [')
        out.write(",".join(f'{{"id":{i},"file_name":"{i:012d}.jpg","height":480,"width":640}}' for i in range(images)))
        out.write('], "annotations": [')
        records = []
        for image, count in enumerate(per_image):
            infos = ",".join(
                f'{{"id":{k + 1},"category_id":{int(rng.integers(1, 134))},"iscrowd":0,"bbox":[1,2,3,4],"area":100}}'
                for k in range(count)
            )
            records.append(f'{{"image_id":{image},"file_name":"{image:012d}.png","segments_info":[{infos}]}}')
        out.write(",".join(records))
        out.write('], "categories": ' + json.dumps(CATEGORIES) + "}")


def _index(kind: str, path: str) -> None:
    """Child process: index and print seconds, peak RSS (GiB), samples, segments as JSON."""
    from zoo.data.readers import CocoInstances, CocoPanoptic

    start = time.perf_counter()
    if kind == "instances":
        dataset = CocoInstances(path, "/nonexistent")
        segments = sum(len(a) for a in dataset.annotations.values())
    else:
        dataset = CocoPanoptic(path, "/nonexistent", "/nonexistent")
        segments = sum(len(r[-1]) for r in dataset.records)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_gib": peak, "samples": len(dataset), "segments": segments}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118_287)
    parser.add_argument("--segments", type=int, default=860_001)
    parser.add_argument("--keep", help="folder to write the synthetic JSONs to (default: a temporary folder)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _index(*args.child)
        return
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind, writer in (("instances", write_instances), ("panoptic", write_panoptic)):
        path = folder / f"{kind}_train2017.json"
        if not path.exists():
            writer(path, args.images, args.segments)
        size = path.stat().st_size / 2**20
        result = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(path)], capture_output=True, text=True, check=True
        )
        stats = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append((kind, size, stats))
    print(f"{'file':<12}{'MiB':>8}{'images':>10}{'segments':>10}{'index s':>10}{'peak GiB':>10}   target")
    for kind, size, s in rows:
        ok = "ok" if s["seconds"] <= 60 and s["peak_gib"] <= 4 else "MISSED"
        print(
            f"{kind:<12}{size:>8.0f}{s['samples']:>10}{s['segments']:>10}{s['seconds']:>10.1f}{s['peak_gib']:>10.2f}   "
            f"<= 60 s, <= 4 GiB: {ok}"
        )


if __name__ == "__main__":
    main()
