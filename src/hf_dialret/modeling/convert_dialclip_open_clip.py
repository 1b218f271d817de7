"""Conversion of an open_clip ViT ``CLIP`` into a transformers `CLIPModel` (used by ``DialCLIPModel.from_open_clip``).

Flat, remote-code-safe file (torch and transformers only). Converting, rather than wrapping, means the rest of the
library (the DialCLIP adapter's layer wrappers, saving, the Hub) sees one CLIP implementation.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPConfig, CLIPModel


def _block_weights(sd: dict, src: str, dst: str, layers: int) -> dict[str, torch.Tensor]:
    """open_clip residual blocks (fused qkv `nn.MultiheadAttention`) → `CLIPEncoderLayer` weights."""
    out = {}
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
             "attn.out_proj": "self_attn.out_proj"}
    for i in range(layers):
        for kind in ("weight", "bias"):
            q, k, v = sd.pop(f"{src}.{i}.attn.in_proj_{kind}").chunk(3)
            out.update({f"{dst}.{i}.self_attn.{n}_proj.{kind}": t for n, t in zip("qkv", (q, k, v))})
            for a, b in names.items():
                out[f"{dst}.{i}.{b}.{kind}"] = sd.pop(f"{src}.{i}.{a}.{kind}")
    return out


def open_clip_to_clip(oc_model: nn.Module) -> CLIPModel:
    """Convert an open_clip ViT ``CLIP`` into a transformers `CLIPModel` with the same weights."""
    visual = getattr(oc_model, "visual", None)
    unsupported = (
        not hasattr(oc_model, "transformer") or not hasattr(visual, "conv1")
        or getattr(oc_model, "text_pool_type", "argmax") != "argmax" or getattr(visual, "pool_type", "tok") != "tok"
        or getattr(visual, "attn_pool", None) is not None or getattr(visual, "final_ln_after_pool", False)
        or not isinstance(getattr(oc_model, "text_projection", None), nn.Parameter)
    )
    if unsupported:
        raise ValueError(
            f"Only open_clip's standard ViT CLIP can be converted to a CLIPModel, got {type(oc_model).__name__}"
        )
    block, vblock = oc_model.transformer.resblocks[0], visual.transformer.resblocks[0]
    vocab = oc_model.token_embedding.num_embeddings

    def act(b) -> str:
        return "quick_gelu" if type(b.mlp.gelu).__name__ == "QuickGELU" else "gelu"

    text_config = dict(
        vocab_size=vocab, hidden_size=oc_model.token_embedding.embedding_dim,
        intermediate_size=block.mlp.c_fc.out_features,
        num_hidden_layers=len(oc_model.transformer.resblocks), num_attention_heads=block.attn.num_heads,
        max_position_embeddings=oc_model.positional_embedding.shape[0], hidden_act=act(block),
        layer_norm_eps=oc_model.ln_final.eps,
        # open_clip's tokenizer: <start_of_text> and <end_of_text> are the two highest ids, padding is 0
        bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=0,
    )
    image_size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    vision_config = dict(
        hidden_size=visual.conv1.out_channels, intermediate_size=vblock.mlp.c_fc.out_features,
        num_hidden_layers=len(visual.transformer.resblocks), num_attention_heads=vblock.attn.num_heads,
        image_size=image_size, patch_size=visual.conv1.kernel_size[0], hidden_act=act(vblock),
        layer_norm_eps=visual.ln_post.eps,
    )
    config = CLIPConfig(text_config=text_config, vision_config=vision_config,
                        projection_dim=oc_model.text_projection.shape[1])
    sd = {k: v.detach().clone() for k, v in oc_model.state_dict().items()}
    new = {
        "logit_scale": sd.pop("logit_scale"),
        "text_projection.weight": sd.pop("text_projection").T.contiguous(),
        "visual_projection.weight": sd.pop("visual.proj").T.contiguous(),
        "text_model.embeddings.token_embedding.weight": sd.pop("token_embedding.weight"),
        "text_model.embeddings.position_embedding.weight": sd.pop("positional_embedding"),
        "text_model.final_layer_norm.weight": sd.pop("ln_final.weight"),
        "text_model.final_layer_norm.bias": sd.pop("ln_final.bias"),
        "vision_model.embeddings.class_embedding": sd.pop("visual.class_embedding"),
        "vision_model.embeddings.position_embedding.weight": sd.pop("visual.positional_embedding"),
        "vision_model.embeddings.patch_embedding.weight": sd.pop("visual.conv1.weight"),
    }
    for a, b in (("visual.ln_pre", "vision_model.pre_layrnorm"), ("visual.ln_post", "vision_model.post_layernorm")):
        new.update({f"{b}.{k}": sd.pop(f"{a}.{k}") for k in ("weight", "bias")})
    new.update(_block_weights(sd, "transformer.resblocks", "text_model.encoder.layers",
                              config.text_config.num_hidden_layers))
    new.update(_block_weights(sd, "visual.transformer.resblocks", "vision_model.encoder.layers",
                              config.vision_config.num_hidden_layers))
    sd.pop("attn_mask", None)  # the causal mask buffer; CLIPTextModel builds its own
    if sd:
        raise ValueError(f"open_clip weights with no CLIPModel counterpart (unsupported variant): {sorted(sd)}")
    clip = CLIPModel(config)
    clip.load_state_dict(new, strict=True)
    return clip.eval()


__all__ = ["open_clip_to_clip"]
