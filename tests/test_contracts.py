"""Decoder inputs and criteria as contracts: what a bridge produces reaches the decoder that declares it reads it,
an impossible pairing fails when the model is built, and the criterion is told the batch's task."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import Tensor

from zoo.bridges import Bridge, LearnedQueries
from zoo.decoders import Mask2FormerDecoder, SeemDecoder, TransformerEncoderPixelDecoder
from zoo.decoders.base import MaskDecoder
from zoo.encoders import FocalNetEncoder
from zoo.heads import ConditionHead
from zoo.losses import Criterion
from zoo.model import SegmentationModel
from zoo.module import ZooModule
from zoo.types import Batch, BridgeOutput, DecoderLayerOutput, Dims, PixelFeatures, Prediction, SparsePrompts

DECODER = dict(hidden_dim=32, num_queries=8, num_layers=2, num_heads=4, ffn_dim=64)


class OffsetBridge(Bridge):
    """Adds one vector to every learned query (the shape of X-SAM's `<SEG>` offset); one constant condition."""

    produces = frozenset({"query_offset"})

    def __init__(self, dims: Dims) -> None:
        super().__init__()
        self.offset = torch.nn.Parameter(torch.zeros(1, 1, dims.decoder_dim))

    def forward(self, batch: Batch, features: dict[str, Tensor]) -> BridgeOutput:
        conditions = torch.ones(len(batch), 1, self.offset.shape[-1])
        return BridgeOutput(query_offset=self.offset.expand(len(batch), -1, -1), conditions=conditions)


class SparseBridge(Bridge):
    """K = 2 mask requests per sample, each one prompt embedding; the second request of sample 1 is padding."""

    produces = frozenset({"sparse_prompts"})

    def __init__(self, dims: Dims) -> None:
        super().__init__()
        self.dim = dims.decoder_dim

    def forward(self, batch: Batch, features: dict[str, Tensor]) -> BridgeOutput:
        embeddings = torch.arange(len(batch) * 2 * self.dim, dtype=torch.float).view(len(batch), 2, 1, self.dim)
        valid = torch.ones(len(batch), 2, 1, dtype=torch.bool)
        valid[1, 1] = False
        return BridgeOutput(sparse_prompts=SparsePrompts(embeddings, valid))


class PromptDecoder(MaskDecoder):
    """A toy prompt decoder: one mask per request, scored by itself (as SAM's predicted IoU would)."""

    reads = frozenset({"sparse_prompts"})
    requires = frozenset({"sparse_prompts"})
    scores_masks = True

    def __init__(self, in_dim: int, mask_dim: int) -> None:
        super().__init__(in_dim, mask_dim, hidden_dim=mask_dim, num_queries=1, num_layers=1)
        self.seen: list[SparsePrompts] = []

    def forward(self, pixel: PixelFeatures, sparse_prompts: SparsePrompts) -> list[DecoderLayerOutput]:
        self.seen.append(sparse_prompts)
        queries = (sparse_prompts.embeddings * sparse_prompts.valid[..., None]).sum(2)  # [B, K, D]
        masks = torch.einsum("bkd,bdhw->bkhw", queries, pixel.mask_features)
        return [DecoderLayerOutput(queries=queries, masks=masks, logits=sparse_prompts.valid.any(-1, keepdim=True))]


def model(bridge: type[Bridge], mask_decoder: object, head: object = ConditionHead) -> SegmentationModel:
    return SegmentationModel(
        encoder=FocalNetEncoder(embed_dim=16, depths=(1, 1, 1, 1), drop_path_rate=0.0),
        pixel_decoder=partial(TransformerEncoderPixelDecoder, hidden_dim=32, mask_dim=32, num_layers=1, num_heads=4),
        mask_decoder=mask_decoder,
        head=head,
        bridge=bridge,
    )


def batch(task: str = "referring", size: int = 64) -> Batch:
    masks = [torch.zeros(1, size, size, dtype=torch.bool) for _ in range(2)]
    return Batch(
        images=torch.rand(2, 3, size, size),
        task=task,
        instructions=["", ""],
        conditions=[["x"], ["y"]],
        masks=masks,
        labels=[torch.zeros(1, dtype=torch.long) for _ in range(2)],
    )


def test_a_decoder_that_cannot_read_the_bridges_output_fails_at_build_naming_both() -> None:
    with pytest.raises(ValueError, match=r"bridge OffsetBridge produces \['query_offset'\], which mask decoder "):
        model(OffsetBridge, partial(SeemDecoder, **DECODER))
    with pytest.raises(ValueError, match=r"SeemDecoder cannot read \(it reads \['prompts', 'query_content'\]\)"):
        model(OffsetBridge, partial(SeemDecoder, **DECODER))


def test_the_bridges_output_reaches_the_decoder_that_reads_it() -> None:
    net = model(OffsetBridge, partial(Mask2FormerDecoder, **DECODER))
    with torch.no_grad():
        plain = net(batch()).predictions[-1].masks
        net.bridge.offset.fill_(1.0)
        offset = net(batch()).predictions[-1].masks
    assert not torch.allclose(plain, offset), "the query offset never reached Mask2Former's queries"


def test_a_decoder_missing_its_required_input_or_a_scorer_fails_at_build() -> None:
    with pytest.raises(ValueError, match=r"PromptDecoder needs \['sparse_prompts'\], which LearnedQueries does not"):
        model(LearnedQueries, PromptDecoder, head=None)
    with pytest.raises(ValueError, match="Mask2FormerDecoder does not score its own masks; the model needs a head"):
        model(LearnedQueries, partial(Mask2FormerDecoder, **DECODER), head=None)


def test_sparse_prompts_reach_a_prompt_decoder_that_needs_no_head() -> None:
    net = model(SparseBridge, PromptDecoder, head=None)
    assert net.head is None
    (prediction,) = net(batch()).predictions
    (seen,) = net.mask_decoder.seen
    assert seen.embeddings.shape == (2, 2, 1, 32) and not seen.valid[1, 1]
    assert prediction.masks.shape[:2] == (2, 2)
    assert prediction.logits[:, :, 0].tolist() == [[True, True], [True, False]]


class RecordingCriterion(Criterion):
    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[str] = []

    def forward(self, predictions, target_masks, target_labels, task, generators=None) -> dict[str, Tensor]:
        self.tasks.append(task)
        return {"loss_mask": predictions[-1].masks.float().mean()}


@pytest.mark.parametrize("task", ["referring", "interactive"])
def test_the_criterion_is_told_the_batchs_task(task: str) -> None:
    criterion = RecordingCriterion()
    module = ZooModule(net=model(OffsetBridge, partial(Mask2FormerDecoder, **DECODER)), criterion=criterion)
    out = module(batch(task))
    assert isinstance(out.predictions[-1], Prediction)
    losses = module._losses(batch(task), out)
    assert criterion.tasks == [task] and set(losses) == {"loss_mask"}
