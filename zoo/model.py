"""The meta-architecture: wires the slots in the order their sizes depend on, with no family branches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from zoo.bridges.base import Bridge
from zoo.connectors.base import Connector
from zoo.decoders.base import MaskDecoder, PixelDecoder
from zoo.encoders.base import Encoder
from zoo.heads.class_heads import Head
from zoo.types import DECODER_INPUTS, Batch, BridgeOutput, DecoderLayerOutput, Dims, FeatureSpecs, Prediction


@dataclass
class ModelOutput:
    """Per-layer predictions (None for text-only batches), the language-model loss where there is one, and the
    generated answer per sample where the bridge generates."""

    predictions: list[Prediction] | None
    lm_loss: Tensor | None
    texts: list[str] | None = None


class SegmentationModel(nn.Module):
    """Encoder -> (connector) -> pixel decoder -> mask decoder, conditioned by a bridge, scored by a head.

    Late parts are given as callables so each is sized from what the earlier parts declare: the pixel decoder
    from the encoder's feature specs, the mask decoder from the pixel decoder, the bridge and head from the
    mask decoder's width and query count. The bridge's output reaches the mask decoder through the inputs the
    decoder declares it reads (`MaskDecoder.reads`); a pairing that cannot work fails here, when it is built.
    The head may be left out when the decoder scores its own masks.
    """

    def __init__(
        self,
        encoder: Encoder,
        pixel_decoder: Callable[[FeatureSpecs], PixelDecoder],
        mask_decoder: Callable[[int, int], MaskDecoder],
        head: Callable[[int], Head] | None = None,
        bridge: Callable[[Dims], Bridge] | None = None,
        connector: Callable[[FeatureSpecs], Connector] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.connector = connector(encoder.output_specs) if connector is not None else None
        pyramid = self.connector.output_specs if self.connector is not None else encoder.output_specs
        self.pixel_decoder = pixel_decoder(pyramid)
        self.mask_decoder = mask_decoder(self.pixel_decoder.hidden_dim, self.pixel_decoder.mask_dim)
        dims = Dims(encoder.output_specs, self.mask_decoder.hidden_dim, self.mask_decoder.num_queries)
        self.bridge = bridge(dims) if bridge is not None else None
        self.head = head(self.mask_decoder.hidden_dim) if head is not None else None
        check_pairing(self.bridge, self.mask_decoder, self.head)

    def forward(self, batch: Batch) -> ModelOutput:
        features = self.encoder(batch.images)
        if self.bridge is not None:
            conditioning = self.bridge(batch, features)
        elif batch.task == "caption":
            raise ValueError("this model has no bridge (language model), so it cannot train on caption batches")
        else:
            conditioning = BridgeOutput()
        if batch.task == "caption":
            return ModelOutput(predictions=None, lm_loss=conditioning.lm_loss, texts=conditioning.texts)
        pyramid = self.connector(features) if self.connector is not None else features
        inputs = {name: getattr(conditioning, name) for name in sorted(self.mask_decoder.reads)}
        inputs = {name: value for name, value in inputs.items() if value is not None}
        layers = self.mask_decoder(self.pixel_decoder(pyramid), **inputs)
        predictions = [Prediction(self._logits(out, conditioning, batch.task), out.masks) for out in layers]
        return ModelOutput(predictions=predictions, lm_loss=conditioning.lm_loss, texts=conditioning.texts)

    def _logits(self, out: DecoderLayerOutput, conditioning: BridgeOutput, task: str) -> Tensor:
        """The decoder's own scores where it gives them (SEEM's visual prompts), the head's otherwise."""
        if out.logits is not None:
            return out.logits
        if self.head is None:
            raise ValueError(
                f"{type(self.mask_decoder).__name__} gave no scores for task '{task}' and there is no head"
            )
        return self.head(out.queries, conditioning, task)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Checkpoint the language model's layers (the part whose activations dominate memory)."""
        lm = getattr(self.bridge, "lm", None)
        if lm is None:
            raise ValueError("gradient checkpointing is for the language model, and this model has none")
        lm.set_gradient_checkpointing(enabled)


def check_pairing(bridge: Bridge | None, decoder: MaskDecoder, head: Head | None) -> None:
    """Fail at build time, naming both parts, when a decoder cannot read what the bridge produces (or needs what
    it does not produce), or when nothing would score the masks."""
    produced = bridge.produces if bridge is not None else frozenset()
    bridge_name = type(bridge).__name__ if bridge is not None else "no bridge"
    decoder_name = type(decoder).__name__
    unknown = (produced | decoder.reads) - set(DECODER_INPUTS)
    if unknown:
        raise ValueError(
            f"{bridge_name} / {decoder_name} name decoder inputs {sorted(unknown)}; known: {DECODER_INPUTS}"
        )
    unread = produced - decoder.reads
    if unread:
        raise ValueError(
            f"bridge {bridge_name} produces {sorted(unread)}, which mask decoder {decoder_name} cannot read (it reads "
            f"{sorted(decoder.reads)}); pair the bridge with a decoder that reads them"
        )
    missing = decoder.requires - produced
    if missing:
        raise ValueError(f"mask decoder {decoder_name} needs {sorted(missing)}, which {bridge_name} does not produce")
    if head is None and not decoder.scores_masks:
        raise ValueError(f"mask decoder {decoder_name} does not score its own masks; the model needs a head")
