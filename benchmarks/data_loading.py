"""Samples per second one loader worker produces, for a 1024x1024 COCO-panoptic sample and a RefCOCO sample.

Writes the files in their published formats (JPEG image; panoptic PNG + JSON with 40 segments; RefCOCO refs pickle
+ instances.json with a polygon), then times the real readers' `__getitem__` (decode + masks + SAM-style
ResizeLongestPad to 1024) in this process, which is what each DataLoader worker does. The figure to beat is a
GPU step: X-SAM stage 3 runs 4 samples per GPU per step; at a step time of STEP_S seconds a GPU consumes
4 / STEP_S samples/s, so `workers needed = (4 / STEP_S) / (samples/s per worker)`.
Usage: `python benchmarks/data_loading.py [--seconds 10] [--step 1.0]`.
"""

from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.data.readers import CocoPanoptic, RefCOCO
from zoo.data.readers.coco import id2rgb
from zoo.data.transforms import ResizeLongestPad

SIZE, SEGMENTS = 1024, 40
PER_GPU_BATCH = 4  # X-SAM stage 3: 4 samples per GPU


def _photo(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random image: JPEG decodes photos, not white noise, at realistic speed."""
    small = rng.integers(0, 255, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def write_panoptic(root: Path, rng: np.random.Generator) -> CocoPanoptic:
    Image.fromarray(_photo(SIZE, SIZE, rng)).save(root / "pan.jpg", quality=90)
    ids = np.zeros((SIZE, SIZE), dtype=np.int64)
    side = SIZE // 8
    for k in range(SEGMENTS):  # 40 rectangles of an 8x8 grid, the rest one background segment
        y, x = divmod(k, 8)
        ids[y * side : (y + 1) * side, x * side : (x + 1) * side] = k + 1
    ids[ids == 0] = SEGMENTS + 1
    (root / "pan").mkdir(exist_ok=True)
    Image.fromarray(id2rgb(ids)).save(root / "pan" / "pan.png")
    segments = [{"id": k + 1, "category_id": 1 + k % 2, "iscrowd": 0} for k in range(SEGMENTS + 1)]
    data = {
        "images": [{"id": 1, "file_name": "pan.jpg", "height": SIZE, "width": SIZE}],
        "annotations": [{"image_id": 1, "file_name": "pan.png", "segments_info": segments}],
        "categories": [{"id": 1, "name": "thing", "isthing": 1}, {"id": 2, "name": "stuff", "isthing": 0}],
    }
    (root / "panoptic.json").write_text(json.dumps(data))
    return CocoPanoptic(root / "panoptic.json", root, root / "pan", transform=ResizeLongestPad(1024))


def write_refcoco(root: Path, rng: np.random.Generator) -> RefCOCO:
    height, width = 480, 640  # a COCO train2014 image
    Image.fromarray(_photo(height, width, rng)).save(root / "ref.jpg", quality=90)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    polygon = np.column_stack([320 + 150 * np.cos(angles), 240 + 120 * np.sin(angles)]).ravel().round(2).tolist()
    data = {
        "images": [{"id": 9, "file_name": "ref.jpg", "height": height, "width": width}],
        "annotations": [
            {"id": 1, "image_id": 9, "category_id": 1, "segmentation": [polygon], "bbox": [170, 120, 300, 240]}
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (root / "instances.json").write_text(json.dumps(data))
    refs = [
        {"ref_id": 0, "ann_id": 1, "image_id": 9, "split": "val", "sentences": [{"sent": "the thing", "sent_id": 0}]}
    ]
    (root / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return RefCOCO(root / "refs(unc).p", root / "instances.json", root, split="val", transform=ResizeLongestPad(1024))


def rate(dataset, seconds: float) -> float:
    dataset[0]  # warm caches
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        dataset[0]
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timing window per sample kind")
    parser.add_argument("--step", type=float, default=1.0, help="GPU step time (s) the loader must keep up with")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    need = PER_GPU_BATCH / args.step
    print(f"GPU consumes {need:.1f} samples/s ({PER_GPU_BATCH} per GPU per {args.step:.2f} s step)")
    print(f"{'sample':<40}{'samples/s per worker':>22}{'workers needed':>16}")
    for name, dataset in (
        (f"panoptic {SIZE}x{SIZE}, {SEGMENTS + 1} segments", write_panoptic(root, rng)),
        ("referring 640x480 -> 1024 padded", write_refcoco(root, rng)),
    ):
        per_worker = rate(dataset, args.seconds)
        print(f"{name:<40}{per_worker:>22.1f}{need / per_worker:>16.2f}")


if __name__ == "__main__":
    main()
