"""P-tuning v2: learned keys and values prepended in every targeted attention, as direct parameters.

Liu et al., "P-Tuning v2: Prompt Tuning Can Be Comparable to Fine-tuning Universally Across Scales and Tasks",
ACL 2022. https://arxiv.org/abs/2110.07602

Prefix tuning without the reparameterising MLP (peft's PrefixEncoder with `prefix_projection=False`): one
Embedding(P, A*2*D) holds every targeted attention's key and value prefix directly. At blip-base (D 768, 12
layers, P 10) that is 184,320 parameters per tower. Not peft's `P_TUNING`, which is P-tuning v1 (input prompts).
"""

from __future__ import annotations

import functools

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from mile.tuning.base import MethodCall
from mile.tuning.prefix import PrefixApplied, PrefixProvider, attach_prefix


class PTV2Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_virtual_tokens: int = Field(10, ge=1)  # P


class PromptKeysValues(PrefixProvider):
    def __init__(self, attentions: int, width: int, tokens: int):
        super().__init__()
        self.shape = (tokens, attentions, 2, width)
        self.embedding = nn.Embedding(tokens, attentions * 2 * width)

    def compute(self) -> Tensor:
        return self.embedding.weight.view(self.shape).permute(1, 2, 0, 3)  # (A, 2, P, D)


def apply_ptv2(model: nn.Module, call: MethodCall) -> PrefixApplied:
    opts = PTV2Options(**call.options)
    return attach_prefix(model, call, functools.partial(PromptKeysValues, tokens=opts.num_virtual_tokens))
