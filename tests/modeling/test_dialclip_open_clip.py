"""DialCLIPModel.from_open_clip: an open_clip model converted to a transformers CLIPModel gives the same embeddings."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from hf_dialret.modeling.convert_dialclip_open_clip import open_clip_to_clip
from hf_dialret.modeling.modeling_dialclip import DialCLIPModel

open_clip = pytest.importorskip("open_clip")

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 30, "layers": 2, "width": 32, "patch_size": 10, "head_width": 8, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 16, "vocab_size": 99, "width": 32, "heads": 4, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory):
    path = tmp_path_factory.mktemp("open_clip") / "dialret-tiny-oc.json"
    path.write_text(json.dumps(TINY))
    open_clip.add_model_config(str(path))  # registers "dialret-tiny-oc" (no weights: pretrained=None)
    return "dialret-tiny-oc"


def test_from_open_clip_matches_open_clip(tiny_name):
    torch.manual_seed(0)
    model = DialCLIPModel.from_open_clip(tiny_name).eval()
    torch.manual_seed(0)  # same seed → same random open_clip weights as inside from_open_clip
    reference = open_clip.create_model(tiny_name, pretrained=None).eval()
    # open_clip's tokenizer layout: <sot> = vocab-2, <eot> = vocab-1 (the highest id, where it pools), pad = 0
    ids = torch.tensor([[97, 5, 6, 7, 98, 0, 0], [97, 9, 98, 0, 0, 0, 0]])
    pixels = torch.randn(2, 3, 30, 30)
    with torch.no_grad():
        ours = model.encode_context(ids, (ids != 0).long() | (ids == 97).long(), modality="text")
        images = model.encode_responses(response_pixel_values=pixels)
        ref_text = F.normalize(reference.encode_text(F.pad(ids, (0, 16 - ids.size(1)))), dim=-1)
        ref_image = F.normalize(reference.encode_image(pixels), dim=-1)
    assert torch.allclose(ours, ref_text, atol=1e-5)
    assert torch.allclose(images, ref_image, atol=1e-5)
    assert model.config.clip_backbone == f"open_clip:{tiny_name}"
    assert torch.equal(model.logit_scale, reference.logit_scale)


def test_unsupported_open_clip_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="standard ViT CLIP"):
        open_clip_to_clip(torch.nn.Linear(2, 2))
