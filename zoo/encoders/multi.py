"""Several encoders over one image as one encoder slot (X-SAM: SigLIP for the LLM, SAM ViT for masks)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from torch import Tensor

from zoo.encoders.base import Encoder
from zoo.registry import register


class LazyFeatures(Mapping[str, Tensor]):
    """The maps of several encoders, each encoder run on first access to one of its maps.

    A stage that reads only some encoders (X-SAM's segmentor stage ignores SigLIP; a caption batch never reads
    the mask encoder) does not pay for the others.
    """

    def __init__(self, owner: MultiEncoder, images: Tensor) -> None:
        self._owner = owner
        self._images = images
        self._computed: dict[str, dict[str, Tensor]] = {}

    def __getitem__(self, key: str) -> Tensor:
        if key not in self._owner.routes:
            raise KeyError(f"no feature '{key}'; this MultiEncoder gives {list(self._owner.routes)}")
        prefix, name = self._owner.routes[key]
        if prefix not in self._computed:
            self._computed[prefix] = self._owner.get_submodule(prefix)(self._images)
        return self._computed[prefix][name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._owner.routes)

    def __len__(self) -> int:
        return len(self._owner.routes)


@register("encoder")
class MultiEncoder(Encoder):
    """Named encoders over the same image; their maps are prefixed with the encoder's name ('sam_layer24').

    Later parts pick maps by these names (a projector `image_feature`, the connector's `layers`), so a family
    that needs two encoders fills the one encoder slot without any branch in the model.
    """

    def __init__(self, encoders: dict[str, Encoder]) -> None:
        super().__init__()
        if not encoders:
            raise ValueError("MultiEncoder needs at least one encoder")
        self.routes: dict[str, tuple[str, str]] = {}
        self.output_specs = {}
        for prefix, encoder in encoders.items():
            if not prefix.isidentifier() or "_" in prefix or hasattr(self, prefix):
                raise ValueError(f"MultiEncoder name '{prefix}' must be a plain word without '_' (e.g. 'sam')")
            self.add_module(prefix, encoder)
            for name, spec in encoder.output_specs.items():
                self.routes[f"{prefix}_{name}"] = (prefix, name)
                self.output_specs[f"{prefix}_{name}"] = spec

    def forward(self, images: Tensor) -> Mapping[str, Tensor]:
        return LazyFeatures(self, images)
