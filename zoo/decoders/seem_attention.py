"""SEEM's declarative attention graph: which groups of decoder variables attend to which, and who reads pixels.

SEEM mixes six groups in one transformer: learnable object queries, grounding queries (copies of the object
queries) with the text tokens, spatial queries (copies drawn per prompted object) with the visual-prompt tokens and
the memory prompts. The graph says, per group, which groups its self-attention may read, and which groups
cross-attend to the image; a recipe changes the mixing by editing it (SEEM's demo graph, for example, lets object
queries read every token). Groups in `PER_PROMPT` belong to one prompted object each: attention between two such
variables stays within their object, as SEEM's per-object self-attention masks do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from zoo.tasks import task_names, task_spec

GROUPS = (
    "queries_object",
    "queries_grounding",
    "queries_spatial",
    "tokens_grounding",
    "tokens_spatial",
    "memories_spatial",
)
PER_PROMPT = frozenset({"queries_spatial", "tokens_spatial", "memories_spatial"})


def _seem_v1_self_attention() -> dict[str, list[str]]:
    return {
        "queries_object": ["queries_object"],
        "queries_grounding": ["queries_grounding", "tokens_grounding"],
        "queries_spatial": ["queries_spatial", "tokens_spatial", "memories_spatial"],
        "tokens_grounding": ["queries_grounding", "tokens_grounding"],
        "tokens_spatial": ["tokens_spatial"],
        "memories_spatial": ["memories_spatial"],
    }


def _seem_v1_cross_attention() -> list[str]:
    return ["queries_object", "queries_grounding", "queries_spatial", "memories_spatial"]


def _seem_outputs() -> dict[str, str]:
    # Prompted tasks (interactive, and VGD, whose prompt marks one instance of the category to find) are answered
    # by the spatial queries drawn per prompt, generic segmentation by the object queries, texts by grounding.
    def group(name: str) -> str:
        spec = task_spec(name)
        if spec.prompted:
            return "queries_spatial"
        return "queries_object" if spec.scoring == "softmax" else "queries_grounding"

    return {name: group(name) for name in task_names() if task_spec(name).segments}


@dataclass
class AttentionGraph:
    """Who attends to whom (defaults: SEEM v1's `ATTENTION_ARCH`) and which query group answers each task.

    `self_attention[g]` lists the groups g's self-attention reads; `cross_attention` the groups that attend to the
    image (queries inside their previous mask, memories inside the previous round's mask); `outputs[task]` the query
    group whose predictions a task is scored on.
    """

    self_attention: dict[str, list[str]] = field(default_factory=_seem_v1_self_attention)
    cross_attention: list[str] = field(default_factory=_seem_v1_cross_attention)
    outputs: dict[str, str] = field(default_factory=_seem_outputs)

    def __post_init__(self) -> None:
        named = [*self.self_attention, *(g for gs in self.self_attention.values() for g in gs), *self.cross_attention]
        named += list(self.outputs.values())
        unknown = sorted({g for g in named if g not in GROUPS})
        if unknown:
            raise ValueError(f"attention graph names unknown groups {unknown}; groups are {', '.join(GROUPS)}")
        bad = sorted({g for g in self.outputs.values() if not g.startswith("queries_")})
        if bad:
            raise ValueError(f"attention graph outputs must be query groups (queries_*), got {bad}")

    def active(self, task: str, available: set[str]) -> list[str]:
        """The task's output group and every group it reads from, transitively (no other group can change its
        predictions), among those the inputs can fill; in `GROUPS` order."""
        if task not in self.outputs:
            raise ValueError(f"attention graph has no output group for task '{task}'; it has {list(self.outputs)}")
        reached, frontier = set(), [self.outputs[task]]
        while frontier:
            group = frontier.pop()
            if group in reached or group not in available:
                continue
            reached.add(group)
            frontier.extend(self.self_attention.get(group, []))
        if self.outputs[task] not in reached:
            raise ValueError(f"task '{task}' is answered by '{self.outputs[task]}', which these inputs cannot fill")
        return [g for g in GROUPS if g in reached]

    def self_attention_mask(self, groups: list[str], group_ids: Tensor, owners: Tensor, valid: Tensor) -> Tensor:
        """Blocked pairs, bool [B, S, S] (True = may not attend), for a sequence of variables.

        `group_ids` [S] index `groups`, `owners` [S] the prompted object of per-prompt variables (-1 otherwise),
        `valid` [B, S] marks real (unpadded) variables. A variable left with nothing to read reads itself.
        """
        edges = torch.tensor(
            [[b in self.self_attention.get(a, []) for b in groups] for a in groups], device=group_ids.device
        )
        allowed = edges[group_ids][:, group_ids]
        shared = owners < 0
        allowed &= shared[:, None] | shared[None, :] | (owners[:, None] == owners[None, :])
        allowed = allowed[None] & valid[:, None, :]
        allowed |= torch.eye(len(group_ids), dtype=torch.bool, device=allowed.device)[None] & ~allowed.any(-1, True)
        return ~allowed
