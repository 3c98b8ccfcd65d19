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
from zoo.types import Batch, BridgeOutput, DecoderLayerOutput, Dims, FeatureSpecs, Prediction


@dataclass
class ModelOutput:
    """Per-layer predictions (None for text-only batches) and the language-model loss where there is one."""

    predictions: list[Prediction] | None
    lm_loss: Tensor | None


class SegmentationModel(nn.Module):
    """Encoder -> (connector) -> pixel decoder -> mask decoder, conditioned by a bridge, scored by a head.

    Late parts are given as callables so each is sized from what the earlier parts declare: the pixel decoder
    from the encoder's feature specs, the mask decoder from the pixel decoder, the bridge and head from the
    mask decoder's width and query count.
    """

    def __init__(
        self,
        encoder: Encoder,
        pixel_decoder: Callable[[FeatureSpecs], PixelDecoder],
        mask_decoder: Callable[[int, int], MaskDecoder],
        head: Callable[[int], Head],
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
        self.head = head(self.mask_decoder.hidden_dim)

    def forward(self, batch: Batch) -> ModelOutput:
        features = self.encoder(batch.images)
        if self.bridge is not None:
            conditioning = self.bridge(batch, features)
        elif batch.task == "caption":
            raise ValueError("this model has no bridge (language model), so it cannot train on caption batches")
        else:
            conditioning = BridgeOutput()
        if batch.task == "caption":
            return ModelOutput(predictions=None, lm_loss=conditioning.lm_loss)
        pyramid = self.connector(features) if self.connector is not None else features
        # Prompts reach only decoders that mix them into their queries (SEEM); the others never see the argument.
        extra = {} if conditioning.prompts is None else {"prompts": conditioning.prompts}
        if conditioning.query_offset is not None:  # only decoders with learned queries to offset (X-SAM's <SEG>)
            extra["query_offset"] = conditioning.query_offset
        layers = self.mask_decoder(self.pixel_decoder(pyramid), conditioning.query_content, **extra)
        predictions = [Prediction(self._logits(out, conditioning, batch.task), out.masks) for out in layers]
        return ModelOutput(predictions=predictions, lm_loss=conditioning.lm_loss)

    def _logits(self, out: DecoderLayerOutput, conditioning: BridgeOutput, task: str) -> Tensor:
        """The decoder's own scores where it gives them (SEEM's visual prompts), the head's otherwise."""
        return out.logits if out.logits is not None else self.head(out.queries, conditioning, task)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Checkpoint the language model's layers (the part whose activations dominate memory)."""
        lm = getattr(self.bridge, "lm", None)
        if lm is None:
            raise ValueError("gradient checkpointing is for the language model, and this model has none")
        lm.set_gradient_checkpointing(enabled)
