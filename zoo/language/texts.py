"""Task texts: what a sample asks and what the model answers, per task, as each family published them.

A format may use `{instruction}` (the sample's instruction, or a later turn's question), `{conditions}` (the
sample's conditions, each written as `condition` and joined by `separator`), `{answer}` (the sample's answer),
`{name}` (in `condition`: a category name or expression) and the model's tokens `{seg_token}`, `{open_token}`,
`{close_token}`, `{eos}`, `{bos}`. Names in angle brackets that the bridge declares (`<image>`, PSALM's `<seg>`
for the mask tokens, `<region>` for one visual-prompt token) are embedding slots, filled with vectors, not text.

Sets: `psalm` (psalm/train/train_datasets.py) and `xsam` (X-SAM AAAI26_Archive, dataset/map_fns/*), and the
`psalm-minimal` / `xsam-minimal` layouts of the tiny recipes (no words besides the sample's own).
"""

from __future__ import annotations

from dataclasses import dataclass

from zoo.registry import unknown_message


@dataclass(frozen=True)
class TaskTexts:
    """One task's turn texts. Variants are drawn per sample in training and the first is used in evaluation, so
    evaluation is reproducible (X-SAM draws at evaluation too, which makes its numbers seed-dependent)."""

    questions: tuple[str, ...]
    answers: tuple[str, ...]
    condition: str = "{name}"
    separator: str = ""
    # Each condition tokenized on its own, as PSALM splices separately tokenized spans in at <cls> / <refer>;
    # otherwise conditions are tokenized with the text around them, as X-SAM's encoder does.
    alone: bool = False
    follow_up: str = "{instruction}"  # the question of a later turn (multi-turn conversations)

    def __post_init__(self) -> None:
        if not self.questions or not self.answers:
            raise ValueError("task texts need at least one question and one answer")


_PSALM_CAPTION = TaskTexts(("<image>\n{instruction}",), ("{answer}",))  # LLaVA's preprocess_multimodal
_PSALM_REGIONS = TaskTexts(
    ("This is an image <image>, Please segment by given regions\nThis is all regions:  {conditions}.\n",),
    ("\n{seg_token}<seg>",),
    condition="<region>",
    separator=", ",
)
PSALM = {
    "panoptic": TaskTexts(
        (
            "This is an image <image>, Please do Panoptic Segmentation.\nThis is all the candidate categories: "
            "{conditions}.\n",
        ),
        ("\nSure, the segmentation result is <seg>",),
        condition="{name}{seg_token}",
        separator=", ",
        alone=True,
    ),
    "referring": TaskTexts(
        (
            "This is an image <image>, Please doing Referring Segmentation according to the following instruction:\n"
            "{conditions}",
        ),
        ("\nSure, the segmentation result is <seg>",),
        condition=" {name}.{seg_token}",
        alone=True,
    ),
    "interactive": _PSALM_REGIONS,
    "vgd": _PSALM_REGIONS,  # PSALM has no VGD task: its visual-prompt texts
    "caption": _PSALM_CAPTION,
}

_XSAM_SEG_ANSWERS = (
    "{seg_token}.",
    "It is {seg_token}.",
    "Sure, {seg_token}.",
    "Sure, it is {seg_token}.",
    "Sure, the segmentation result is {seg_token}.",
)
_XSAM_REGIONS = TaskTexts(  # vgdseg_map_fn.py (intseg_map_fn calls it too)
    tuple(
        "<image>\n" + q
        for q in (
            "Can you segment the image based on the following regions: {conditions}? Please output the "
            "corresponding segmentation mask.",
            "Can you generate segmentation masks for this image based on the specified regions: {conditions}? "
            "Please generate the segmentation masks.",
            "Can you provide segmentation masks for this image based on these regions: {conditions}? Please "
            "provide the segmentation masks.",
            "Could you create segmentation masks for this image according to the specified regions: {conditions}? "
            "Please create the segmentation masks.",
            "Could you output segmentation masks for this image that highlight the following regions: "
            "{conditions}? Please output the segmentation masks.",
            "Could you provide segmentation masks for this image according to the specified regions: "
            "{conditions}? Please respond with the segmentation masks.",
        )
    ),
    _XSAM_SEG_ANSWERS,
    condition="{open_token}<region>{close_token}",
    separator=", ",
)
XSAM = {
    "panoptic": TaskTexts(  # genseg_map_fn.py: MASK_QUESTION_LIST, MASK_ANSWER_LIST, tag_categories
        tuple(
            "<image>\n" + q
            for q in (
                "Can you segment the image based on the following categories: {conditions}? Please output the "
                "segmentation masks.",
                "Can you generate segmentation masks for this image based on the specified categories: "
                "{conditions}? Please generate the segmentation masks.",
                "Can you provide segmentation masks for this image based on these categories: {conditions}? "
                "Please provide the segmentation masks.",
                "Could you create segmentation masks for this image according to the specified categories: "
                "{conditions}? Please create the segmentation masks.",
                "Could you output segmentation masks for this image that highlight the following categories: "
                "{conditions}? Please output the segmentation masks.",
                "Could you provide segmentation masks for this image according to the specified categories: "
                "{conditions}? Please respond with the segmentation masks.",
            )
        ),
        _XSAM_SEG_ANSWERS,
        condition="{open_token}{name}{close_token}",
        separator=", ",
    ),
    "referring": TaskTexts(  # refseg_map_fn.py: SEG_QUESTIONS, ANSWER_LIST
        tuple(
            "<image>\n" + q
            for q in (
                "Please identify and segment the {conditions} in this image.",
                "Please segment {conditions} in this image.",
                "What is {conditions} in this image? Please output the corresponding segmentation mask.",
                "Can you segment {conditions} in this image? Please generate the segmentation mask.",
                "Could you provide a segmentation mask for the {conditions} in this image? Please provide the "
                "segmentation mask.",
                "Where is the {conditions} in this picture? Please output the segmentation masks.",
                "Can you highlight the {conditions} in this image with a segmentation mask? Please output the "
                "segmentation mask.",
                "Could you provide a segmentation mask for the {conditions} in this image? Please respond with the "
                "segmentation mask.",
                "Where is the {conditions} in this picture? Please output the corresponding segmentation mask.",
                "Can you highlight the {conditions} in this image with a segmentation mask? Please output the "
                "segmentation mask.",
            )
        ),
        _XSAM_SEG_ANSWERS[:4] + ("Sure, the segmentation mask is {seg_token}.",),
        condition="{open_token}{name}{close_token}",
        separator=", ",
    ),
    "interactive": _XSAM_REGIONS,
    "vgd": _XSAM_REGIONS,
    "caption": TaskTexts(("<image>\n{instruction}",), ("{answer}",)),  # imgconv_map_fn.py
}

# The tiny recipes' layouts: image, instruction and conditions back to back, then the answer (PSALM: the mask
# tokens, untrained; X-SAM: <SEG>) or the caption, closed by EOS where it is trained on.
PSALM_MINIMAL = {
    **dict.fromkeys(
        ("panoptic", "referring"),
        TaskTexts(("<image>{instruction}{conditions}",), ("<seg>",), condition="{name}{seg_token}", alone=True),
    ),
    **dict.fromkeys(
        ("interactive", "vgd"), TaskTexts(("<image>{instruction}{conditions}",), ("<seg>",), condition="<region>")
    ),
    "caption": TaskTexts(("<image>{instruction}",), ("{answer}{eos}",)),
}
XSAM_MINIMAL = {
    **dict.fromkeys(
        ("panoptic", "referring"),
        TaskTexts(
            ("<image>{instruction}{conditions}",), ("{seg_token}{eos}",), condition="{open_token}{name}{close_token}"
        ),
    ),
    **dict.fromkeys(
        ("interactive", "vgd"),
        TaskTexts(
            ("<image>{instruction}{conditions}",),
            ("{seg_token}{eos}",),
            condition="{open_token}<region>{close_token}",
        ),
    ),
    "caption": TaskTexts(("<image>{instruction}",), ("{answer}{eos}",)),
}

TEXT_SETS: dict[str, dict[str, TaskTexts]] = {
    "psalm": PSALM,
    "xsam": XSAM,
    "psalm-minimal": PSALM_MINIMAL,
    "xsam-minimal": XSAM_MINIMAL,
}


def task_texts(name: str) -> dict[str, TaskTexts]:
    """The text set called `name`, per task."""
    if name not in TEXT_SETS:
        raise ValueError(unknown_message("text set", name, list(TEXT_SETS)))
    return TEXT_SETS[name]
