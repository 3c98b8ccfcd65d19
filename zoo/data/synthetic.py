"""A procedural scene generator: coloured shapes on textured stuff, with expressions, prompts and captions.

Every output is a pure function of (seed, index), so datasets can generate samples lazily, in any order
and in any worker, and still agree with each other. Texts use a small fixed vocabulary (`VOCABULARY`), so a
word-level tokenizer covers everything the generator can say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from zoo.language.tokenizers import register_vocabulary

THING_NAMES = ("circle", "square", "triangle")
STUFF_NAMES = ("sky", "grass", "sand", "water")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (40, 200, 60),
    "blue": (45, 70, 225),
    "yellow": (235, 215, 40),
    "white": (245, 245, 245),
    "purple": (150, 55, 190),
}
CATEGORIES: list[dict] = [
    {"id": i, "name": name, "isthing": i < len(THING_NAMES)} for i, name in enumerate(THING_NAMES + STUFF_NAMES)
]
CATEGORY_ID = {c["name"]: c["id"] for c in CATEGORIES}
PROMPT_TYPES = ("point", "box", "scribble", "mask")
INSTRUCTIONS = {
    "panoptic": "segment the image into the candidate categories",
    "referring": "segment the object the expression describes",
    "interactive": "segment the regions the prompts mark",
    "vgd": "segment the categories the prompts mark",
    "caption": "describe the image",
}
_RELATION_WORDS = "the shape on left right at top bottom largest smallest above below to of"
_CAPTION_WORDS = "a and on under in the"
VOCABULARY: list[str] = sorted(
    set(CATEGORY_ID)
    | set(COLOURS)
    | set(_RELATION_WORDS.split())
    | set(_CAPTION_WORDS.split())
    | {word for text in INSTRUCTIONS.values() for word in text.split()}
)
register_vocabulary("synthetic-words", VOCABULARY)  # the tiny recipes' tokenizer

_STUFF_BASE = {
    "sky": (135, 190, 235),
    "grass": (70, 135, 50),
    "sand": (215, 190, 135),
    "water": (35, 95, 160),
}
_SIZE_RANGE = (
    0.22,
    0.36,
)  # object side as a fraction of the image side; the smallest triangle still covers 2.4%
_MIN_AREA = 0.02  # objects whose visible part is smaller than this fraction of the image are dropped
_MARGIN = 0.1  # positions must differ by this fraction of the side for a spatial word to be unambiguous
_SIZE_RATIO = 1.3  # areas must differ by this factor for "largest"/"smallest" to be unambiguous


@dataclass(frozen=True)
class SceneObject:
    """A visible thing: its mask is what remains after later objects painted over it."""

    category: str
    colour: str
    mask: np.ndarray  # [H, W] bool
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1, exclusive ends
    centroid: tuple[float, float]  # x, y
    area: int


@dataclass(frozen=True)
class Segment:
    """One panoptic segment: every pixel of a scene belongs to exactly one."""

    category_id: int
    mask: np.ndarray  # [H, W] bool
    isthing: bool


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # [H, W, 3] uint8
    objects: list[SceneObject]  # in painting order, back to front
    segments: list[Segment]  # things (painting order) then stuff (top to bottom)

    @property
    def stuff_names(self) -> list[str]:
        return [CATEGORIES[s.category_id]["name"] for s in self.segments if not s.isthing]


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), cached because every shape and texture is drawn from them."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


def _shape_mask(category: str, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    ys, xs = _grid(size)
    half = side / 2
    if category == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= half**2
    if category == "square":
        return (np.abs(xs - cx) <= half) & (np.abs(ys - cy) <= half)
    depth = (ys - (cy - half)) / side  # upward isosceles triangle: width grows linearly from apex to base
    return (depth >= 0) & (depth <= 1) & (np.abs(xs - cx) <= depth * half)


def _stuff_bands(rng: np.random.Generator, size: int) -> tuple[list[str], np.ndarray]:
    """1-3 stuff categories as horizontal bands with wavy borders; sky, when present, is on top."""
    count = int(rng.integers(1, 4))
    names = [STUFF_NAMES[i] for i in rng.choice(len(STUFF_NAMES), count, replace=False)]
    names.sort(key=lambda n: n != "sky")
    ys, xs = _grid(size)
    band = np.zeros((size, size), dtype=np.int64)
    for k in range(1, count):
        level = k / count + rng.uniform(-0.06, 0.06)
        amplitude, frequency, phase = rng.uniform(0, 0.04), rng.uniform(0.5, 2), rng.uniform(0, 2 * np.pi)
        border = (level + amplitude * np.sin(2 * np.pi * frequency * xs[0] / size + phase)) * size
        band += ys >= border[None, :]
    return names, band


def _stuff_texture(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A flat colour with a category-specific pattern: stuff is recognisable by texture as well as colour."""
    ys, xs = _grid(size)
    noise = rng.normal(size=(size, size))
    scale = 64 / size  # patterns keep the same look at any resolution
    if name == "sky":
        pattern = 25 * ys / size + 3 * noise
    elif name == "grass":
        pattern = 8 * np.sin(1.3 * xs * scale) + 14 * noise
    elif name == "sand":
        pattern = 6 * np.sin(0.8 * (xs + ys) * scale) + 8 * noise
    else:
        pattern = 12 * np.sin(1.2 * ys * scale + 0.5 * np.sin(0.3 * xs * scale)) + 4 * noise
    return np.asarray(_STUFF_BASE[name], dtype=np.float32) + pattern[..., None]


def _paint(shapes: list[np.ndarray], size: int) -> np.ndarray:
    """Index of the front-most shape per pixel (-1 where none), so masks are the visible parts."""
    label = np.full((size, size), -1, dtype=np.int64)
    for k, mask in enumerate(shapes):
        label[mask] = k
    return label


def make_scene(seed: int, index: int, size: int = 64) -> Scene:
    """Scene `index` of the stream `seed`: same arguments, same scene, whatever was generated before."""
    rng = np.random.default_rng([seed, index])
    stuff, band = _stuff_bands(rng, size)

    count = int(rng.integers(2, 5))
    # Distinct (colour, category) pairs: every object then has at least one unambiguous expression.
    pairs = rng.choice(len(COLOURS) * len(THING_NAMES), count, replace=False)
    specs, shapes = [], []
    for pair in pairs:
        colour, category = list(COLOURS)[pair // len(THING_NAMES)], THING_NAMES[pair % len(THING_NAMES)]
        side = rng.uniform(*_SIZE_RANGE) * size
        cx, cy = rng.uniform(side / 2, size - side / 2, 2)
        shade = rng.uniform(-12, 12, 3)
        specs.append((category, colour, shade))
        shapes.append(_shape_mask(category, cx, cy, side, size))
    label = _paint(shapes, size)
    areas = np.bincount(label[label >= 0], minlength=count)
    # The front-most shape is whole, so keeping it always leaves one object even at tiny image sizes.
    keep = [k for k in range(count) if areas[k] >= _MIN_AREA * size * size or k == count - 1]
    if len(keep) < count:  # removing a shape only uncovers others, so one repaint settles every visible area
        specs, shapes = [specs[k] for k in keep], [shapes[k] for k in keep]
        label = _paint(shapes, size)

    image = np.zeros((size, size, 3), dtype=np.float32)
    segments: list[Segment] = []
    stuff_segments: list[Segment] = []
    for j, name in enumerate(stuff):
        region = band == j
        image[region] = _stuff_texture(name, rng, size)[region]
        visible = region & (label < 0)
        if visible.any():
            stuff_segments.append(Segment(CATEGORY_ID[name], visible, False))
    objects = []
    thing_noise = rng.normal(0, 6, (size, size, 1)).astype(np.float32)
    for k, (category, colour, shade) in enumerate(specs):
        mask = label == k
        image[mask] = (np.asarray(COLOURS[colour]) + shade) + thing_noise[mask]
        ys, xs = np.nonzero(mask)
        bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        centroid = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)
        objects.append(SceneObject(category, colour, mask, bbox, centroid, int(mask.sum())))
        segments.append(Segment(CATEGORY_ID[category], mask, True))
    image = np.clip(image, 0, 255).round().astype(np.uint8)
    return Scene(image=image, objects=objects, segments=segments + stuff_segments)


def caption(scene: Scene) -> str:
    """E.g. 'a red circle and a blue square on grass and water under sky' (objects left to right)."""
    objects = sorted(scene.objects, key=lambda o: o.centroid[0])
    text = " and ".join(f"a {o.colour} {o.category}" for o in objects)
    grounds = [n for n in scene.stuff_names if n != "sky"]
    if grounds:
        text += " on " + " and ".join(grounds)
    if "sky" in scene.stuff_names:
        text += " under sky" if grounds else " in the sky"
    return text


def referring_expressions(objects: Sequence[SceneObject], size: int) -> list[list[str]]:
    """Every expression that picks out exactly one object, per object.

    A phrase ('circle', 'red shape', 'shape', 'red circle') names a set of objects; it refers alone when the
    set has one member, and with a superlative or a relation to a uniquely named reference object when exactly
    one member qualifies by a clear margin (positions within `_MARGIN` of each other count as ambiguous).
    """
    margin = _MARGIN * size
    phrases: dict[str, list[int]] = {}
    for i, o in enumerate(objects):
        for phrase in (f"{o.colour} {o.category}", o.category, f"{o.colour} shape", "shape"):
            phrases.setdefault(phrase, []).append(i)
    short_name = [
        next(p for p in (o.category, f"{o.colour} shape", f"{o.colour} {o.category}") if len(phrases[p]) == 1)
        for o in objects
    ]
    x = [o.centroid[0] for o in objects]
    y = [o.centroid[1] for o in objects]
    log_area = np.log([float(o.area) for o in objects]).tolist()  # a size ratio becomes a gap, like positions
    out: list[list[str]] = [[] for _ in objects]

    def extreme(members: list[int], key: list[float], gap: float, words: str, phrase: str) -> None:
        ranked = sorted(members, key=lambda m: key[m])
        if key[ranked[1]] - key[ranked[0]] >= gap:
            out[ranked[0]].append(words.format(phrase))

    for phrase, members in phrases.items():
        if len(members) == 1 and phrase != "shape":
            out[members[0]].append(f"the {phrase}")
            if " shape" not in phrase and " " in phrase:
                out[members[0]].append(phrase)
        if len(members) >= 2:
            extreme(members, x, margin, "the {} on the left", phrase)
            extreme(members, [-v for v in x], margin, "the {} on the right", phrase)
            extreme(members, y, margin, "the {} at the top", phrase)
            extreme(members, [-v for v in y], margin, "the {} at the bottom", phrase)
            extreme(members, [-v for v in log_area], np.log(_SIZE_RATIO), "the largest {}", phrase)
            extreme(members, log_area, np.log(_SIZE_RATIO), "the smallest {}", phrase)
        if len(phrase.split()) == 2 and not phrase.endswith("shape"):
            continue  # 'the red circle above ...' is already unique without the relation
        for r, reference in enumerate(short_name):
            candidates = [m for m in members if m != r]
            for words, offset in (
                ("above", y[r] - np.array(y)),
                ("below", np.array(y) - y[r]),
                ("to the left of", x[r] - np.array(x)),
                ("to the right of", np.array(x) - x[r]),
            ):
                loose = [m for m in candidates if offset[m] > 0]
                if len(loose) == 1 and offset[loose[0]] >= margin:
                    out[loose[0]].append(f"the {phrase} {words} the {reference}")
    return [list(dict.fromkeys(expressions)) for expressions in out]


def visual_prompt(mask: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A prompt mask drawn from a target mask, in the forms PSALM and SEEM train with.

    point: a disk of radius max(1, H // 64) around a deep interior pixel; box: the bounding box with each edge
    jittered by up to 10% of its extent, filled (the exact box where jitter would leave out half the target);
    scribble: a polyline through three interior pixels; mask: the target eroded by one or two pixels. All but
    the box lie inside the target.
    """
    size = mask.shape[0]
    radius = max(1, size // 64)
    ys, xs = _grid(size)
    if kind == "point":
        depth = ndimage.distance_transform_edt(mask)
        candidates = np.flatnonzero(depth >= min(depth.max(), radius + 1))
        py, px = np.unravel_index(candidates[rng.integers(len(candidates))], mask.shape)
        return ((ys - 0.5 - py) ** 2 + (xs - 0.5 - px) ** 2 <= radius**2) & mask
    if kind == "box":
        rows, cols = np.nonzero(mask)
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        dy0, dy1, dx0, dx1 = rng.uniform(-0.1, 0.1, 4) * np.array([y1 - y0, y1 - y0, x1 - x0, x1 - x0])
        jy0, jx0 = int(np.clip(round(y0 + dy0), 0, size - 1)), int(np.clip(round(x0 + dx0), 0, size - 1))
        jy1, jx1 = max(jy0 + 1, min(size, round(y1 + dy1))), max(jx0 + 1, min(size, round(x1 + dx1)))
        box = np.zeros_like(mask)
        box[jy0:jy1, jx0:jx1] = True
        if (box & mask).sum() < 0.5 * mask.sum():  # a thin, half-hidden target can slip out of a shrunk box
            box[:] = False
            box[y0:y1, x0:x1] = True
        return box
    if kind == "scribble":
        interior = ndimage.binary_erosion(mask)
        rows, cols = np.nonzero(interior if interior.any() else mask)
        picks = rng.integers(len(rows), size=3)
        line = np.zeros_like(mask)
        for a, b in zip(picks[:-1], picks[1:], strict=True):
            steps = max(abs(int(rows[b]) - int(rows[a])), abs(int(cols[b]) - int(cols[a]))) + 1
            line[
                np.linspace(rows[a], rows[b], steps).round().astype(int),
                np.linspace(cols[a], cols[b], steps).round().astype(int),
            ] = True
        if radius > 1:
            line = ndimage.binary_dilation(line, iterations=radius - 1)
        return line & mask
    if kind == "mask":
        eroded = ndimage.binary_erosion(mask, iterations=int(rng.integers(1, 3)))
        return eroded if eroded.any() else mask.copy()
    raise ValueError(f"Unknown prompt type '{kind}'. Candidates: {', '.join(PROMPT_TYPES)}.")


def referring_choices(expressions: list[list[str]], count: int, rng: np.random.Generator) -> list[tuple[int, str]]:
    """`count` (object, expression) pairs, visiting objects in a random order before repeating any."""
    order = [int(i) for i in rng.permutation(len(expressions)) if expressions[i]]
    choices = []
    for j in range(count):
        obj = order[j % len(order)]
        choices.append((obj, expressions[obj][int(rng.integers(len(expressions[obj])))]))
    return choices
