"""Interaction: multi-round training (SEEM), where earlier no-grad rounds add clicks at the model's errors.

Before the supervised forward of an interactive batch, a random number of rounds (0..`max_rounds`) run the model
under `no_grad`; after each, every prompted object gets one click from the shared click simulator at its largest
error (positive in a missed region, negative in a spurious one), unless its mask is already good (IoU >=
`stop_iou`, SEEM's 0.925). The supervised round then sees the accumulated positive and negative clicks and the last
round's masks (`Batch.negative_prompts`, `Batch.previous_masks`), as the click loop of evaluation will show them.
Any model can be trained this way; models that ignore the extra fields still see the positive clicks.
`segment_by_example` prompts with regions of another image (SEEM's example prompt).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from zoo.metrics.clicks import click_masks, mask_iou, next_click
from zoo.metrics.conditions import condition_masks, prompt_targets
from zoo.model import SegmentationModel
from zoo.types import Batch, PixelFeatures, Prediction, PromptInputs


class MultiRoundTraining:
    """SEEM's multi-round training: `min_rounds`..`max_rounds` no-grad click rounds before each interactive step.

    `click_radius` is the disk of a simulated click in pixels (SEEM dilates a click by a 3x3 kernel: radius 1).
    """

    def __init__(
        self, max_rounds: int = 5, click_radius: int = 1, stop_iou: float = 0.925, min_rounds: int = 0
    ) -> None:
        if not 0 <= min_rounds <= max_rounds or click_radius < 0:
            raise ValueError(
                f"need 0 <= min_rounds <= max_rounds and click_radius >= 0; got min_rounds={min_rounds}, "
                f"max_rounds={max_rounds}, click_radius={click_radius}"
            )
        self.min_rounds = min_rounds
        self.max_rounds = max_rounds
        self.click_radius = click_radius
        self.stop_iou = stop_iou

    def __call__(self, net: nn.Module, batch: Batch) -> Batch:
        """The batch of the supervised round (unchanged for other tasks or when zero rounds are drawn)."""
        if batch.task != "interactive" or not batch.prompts:
            return batch
        rounds = int(torch.randint(self.min_rounds, self.max_rounds + 1, ()))  # torch's RNG, seeded per step
        if rounds == 0:
            return batch
        targets = [
            prompt_targets(masks, labels, len(prompts))
            for masks, labels, prompts in zip(batch.masks, batch.labels, batch.prompts, strict=True)
        ]
        counts = [len(prompts) for prompts in batch.prompts]
        positive = [p.clone() for p in batch.prompts]
        negative = [torch.zeros_like(p) for p in batch.prompts]
        previous = None
        with torch.no_grad():
            for _ in range(rounds):
                current = dataclasses.replace(
                    batch, prompts=positive, negative_prompts=negative, previous_masks=previous
                )
                previous = condition_masks(net(current).predictions[-1], batch.images.shape[-2:], counts)
                self._click(previous, targets, positive, negative)
        return dataclasses.replace(batch, prompts=positive, negative_prompts=negative, previous_masks=previous)

    def _click(
        self, preds: list[Tensor], targets: list[Tensor], positive: list[Tensor], negative: list[Tensor]
    ) -> None:
        """Add one click per object whose mask is not yet good enough, in place."""
        for pred, target, pos, neg in zip(preds, targets, positive, negative, strict=True):
            for k in range(len(target)):
                if not target[k].any() or mask_iou(pred[k], target[k]) >= self.stop_iou:
                    continue
                click = next_click(pred[k], target[k])
                add_pos, add_neg = click_masks([click], tuple(target.shape[-2:]), self.click_radius)
                pos[k] |= add_pos.to(pos.device)
                neg[k] |= add_neg.to(neg.device)


def _pixel_features(net: SegmentationModel, images: Tensor) -> PixelFeatures:
    features = net.encoder(images)
    return net.pixel_decoder(net.connector(features) if net.connector is not None else features)


def segment_by_example(
    net: SegmentationModel, images: Tensor, reference_images: Tensor, reference_masks: list[Tensor]
) -> list[Prediction]:
    """Segment `images` by regions marked on other images (SEEM's example prompt): `reference_masks[b]` [K, H, W]
    marks K regions of `reference_images[b]`; each layer's prediction scores its queries against those K prompts.

    Needs a mask decoder that reads `PromptInputs` (SEEM's); text is not involved, so the bridge is skipped.
    """
    prompts = PromptInputs(
        task="interactive", positive=reference_masks, reference=_pixel_features(net, reference_images)
    )
    layers = net.mask_decoder(_pixel_features(net, images), None, prompts=prompts)
    return [Prediction(out.logits, out.masks) for out in layers]
