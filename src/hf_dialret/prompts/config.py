"""``DialCLIPPromptConfig``: the PEFT config of DialCLIP's three trainable parts (arXiv 2401.01076)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Union

from peft import PeftConfig


class DialCLIPPeftType(str, enum.Enum):
    """PEFT type of the DialCLIP adapter.

    PEFT's own registration helper only accepts built-in names, so the method is registered into ``peft.mapping``
    with this member. ``name == value`` matters: the enum hashes by name while ``adapter_config.json`` stores the
    value, and a ``(str, Enum)`` member must compare and hash equal to that string for the registry lookup on load;
    transformers' PEFT integration also reads ``peft_type.value``.
    """

    DIALCLIP = "DIALCLIP"


#: The CLIP modules a DialCLIP adapter wraps, as a regex fully matched against module names of a ``DialCLIPModel``:
#: every encoder layer of both towers (domain prompts; the text layer at ``context_prompt_layer`` also holds the
#: Context Prompt Generator) and both projections (Mixture of Projection experts).
DEFAULT_TARGET_MODULES = r"clip\.(text_model|vision_model)\.encoder\.layers\.\d+|clip\.(text|visual)_projection"


@dataclass
class DialCLIPPromptConfig(PeftConfig):
    """Configuration of a DialCLIP adapter: domain prompts, context prompts and Mixture of Projection experts.

    All three act on a frozen CLIP inside a ``DialCLIPModel`` without touching its weights or code: encoder layers
    and projections are wrapped (prepend prompts → run the CLIP layer → strip them; add a low-rank expert update to
    the CLIP projection). With ``domain_prompt_length=0``, ``context_prompt_length=0`` and freshly initialised (zero)
    experts the model computes exactly plain CLIP.
    """

    target_modules: Optional[Union[list[str], str]] = field(
        default=DEFAULT_TARGET_MODULES,
        metadata={"help": "Regex (full match) or list of module names to wrap; the default covers every CLIP "
                          "encoder layer and both projections. Narrow it only to ablate parts."},
    )
    exclude_modules: Optional[Union[list[str], str]] = field(
        default=None, metadata={"help": "Module names or regex to leave unwrapped."}
    )
    modules_to_save: Optional[list[str]] = field(
        default=None,
        metadata={"help": "Extra base modules to train and save in full with the adapter (none in the paper)."},
    )
    domain_prompt_length: int = field(
        default=4,
        metadata={"help": "Domain prompt tokens prepended at every layer of both CLIP encoders (deep prompt tuning; "
                          "replaced layer by layer). 0 disables domain prompts."},
    )
    context_prompt_length: int = field(
        default=16,
        metadata={"help": "M: context prompt tokens produced by the Context Prompt Generator from the dialogue "
                          "context; they enter the query (text) encoder at `context_prompt_layer` and flow through "
                          "the later layers. 0 disables context prompts (and the generator)."},
    )
    context_prompt_layer: int = field(
        default=2,
        metadata={"help": "1-based text-encoder layer at whose input the context prompts are inserted (2 = the "
                          "paper's default, the 2nd layer)."},
    )
    context_bottleneck: int = field(
        default=32,
        metadata={"help": "Width of the Context Prompt Generator: CLIP context features are linearly mapped to this "
                          "size, pooled over turns, and an FFN expands them to M codes of this size before one shared "
                          "up-projection to the text width. Keeps the generator slim (about 50k parameters at "
                          "ViT-B/32 with M=16)."},
    )
    expert_rank: int = field(
        default=4,
        metadata={"help": "Rank of each projection expert: a zero-initialised low-rank update of CLIP's own "
                          "projection, one expert per retrieval type (text query→text response, text query→image "
                          "response). 0 disables the experts (CLIP's projections as they are)."},
    )
    prompt_init_std: float = field(
        default=0.02, metadata={"help": "Standard deviation of the normal initialisation of the domain prompts."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = DialCLIPPeftType.DIALCLIP
        for name in ("domain_prompt_length", "context_prompt_length", "expert_rank"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.context_prompt_layer < 1:
            raise ValueError(
                f"context_prompt_layer is 1-based (2 = the paper's 2nd layer), got {self.context_prompt_layer}"
            )
        if self.context_prompt_length > 0 and self.context_bottleneck < 1:
            raise ValueError(
                f"context_bottleneck must be >= 1 when context prompts are used, got {self.context_bottleneck}"
            )
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, list):
            self.exclude_modules = set(self.exclude_modules)


__all__ = ["DEFAULT_TARGET_MODULES", "DialCLIPPeftType", "DialCLIPPromptConfig"]
