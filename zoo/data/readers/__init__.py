"""Readers of the published dataset formats, each registered as a `dataset` and producing unified `Sample`s."""

from zoo.data.readers.coco import CocoInstances, CocoPanoptic
from zoo.data.readers.common import DataError, ReaderDataset
from zoo.data.readers.gcg import GroundedCaptions
from zoo.data.readers.interactive import CocoInteractive, VisualGrounding
from zoo.data.readers.llava import LlavaConversations
from zoo.data.readers.reasonseg import ReasonSeg
from zoo.data.readers.refcoco import GRefCOCO, RefCOCO, load_plain_pickle
from zoo.data.readers.semantic import SemanticSegmentation

__all__ = [
    "CocoInstances",
    "CocoInteractive",
    "CocoPanoptic",
    "DataError",
    "GRefCOCO",
    "GroundedCaptions",
    "LlavaConversations",
    "ReaderDataset",
    "ReasonSeg",
    "RefCOCO",
    "SemanticSegmentation",
    "VisualGrounding",
    "load_plain_pickle",
]
