"""The cached (GradCache-style) training step gives the plain loss and the plain parameter gradients.

Random state: dropout is *replayed* (the RNG state of each chunk's first pass is restored for its second pass), so
the cached gradients equal those of plain backprop through the same chunked forward passes even with dropout on
(``test_dropout_and_batchnorm_replayed``). Equality with the plain *unchunked* loss is checked with dropout off and
BatchNorm in eval mode, because an unchunked forward draws other dropout masks and normalises by other statistics.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from retriever_fixtures import collator, tiny_corpus, tiny_model, tiny_processor

from hf_dialret.training.cached_loss import cached_training_step, default_loss, split_batch

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


@pytest.fixture(scope="module")
def examples():
    rows = [dict(row) for row in tiny_corpus(num_train=10, num_test=4)["train"]]
    # The synthetic corpus has text-only contexts; give three dialogues pictures so image splitting is exercised.
    for i, t, colour in ((1, -1, "red"), (4, 0, "blue"), (4, -1, "green"), (8, -1, "white")):
        context = [dict(turn) for turn in rows[i]["context"]]
        context[t]["image"] = Image.new("RGB", (32, 32), colour)
        rows[i]["context"] = context
    return rows


@pytest.fixture(scope="module")
def batch(processor, examples):
    out = dict(collator(processor)(examples))
    assert out["context_pixel_values"].size(0) == 4 and 0 < int(out["response_modality"].sum()) < len(examples)
    return out


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _plain(model, batch):
    out = model(**batch, return_loss=False)
    loss = default_loss(model, out.context_embeds, out.response_embeds, out.intent_logits, batch)
    loss.backward()
    return loss.detach()


def _assert_same_grads(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], **TOL, msg=f"gradient of {name}")


@pytest.mark.parametrize(("architecture", "symmetric"), [("mdr", False), ("sdr", False), ("dr", False), ("sdr", True)])
def test_cached_equals_plain(processor, batch, architecture, symmetric):
    model = tiny_model(architecture, processor, dropout=0.0).train()
    model.config.symmetric_loss = symmetric
    model.image_tower.eval()  # BatchNorm on running statistics: the same function for any chunking
    plain_loss = _plain(model, batch)
    plain = _grads(model)
    model.zero_grad()
    cached_loss = cached_training_step(model, batch, chunk_size=3)
    torch.testing.assert_close(cached_loss, plain_loss, **TOL)
    _assert_same_grads(_grads(model), plain)
    assert "logit_scale" in plain  # used by the loss directly, not through the embeddings


def test_loss_scale_and_accumulation(processor, batch):
    model = tiny_model("mdr", processor, dropout=0.0).train()
    model.image_tower.eval()
    _plain(model, batch)
    plain = _grads(model)
    model.zero_grad()
    for _ in range(2):  # two accumulated half-scaled steps = one full step
        cached_training_step(model, batch, chunk_size=4, loss_scale=0.5)
    _assert_same_grads(_grads(model), plain)


def test_dropout_and_batchnorm_replayed(processor, batch):
    """With dropout on and BatchNorm training, the cached step equals backprop through the same chunked passes."""
    chunk = 4
    reference = tiny_model("sdr", processor, dropout=0.3).train()
    cached = tiny_model("sdr", processor, dropout=0.3).train()
    torch.manual_seed(123)
    outs = [reference(**c, return_loss=False) for c in split_batch(batch, chunk, reference.config.image_token_id)]
    cat = {k: torch.cat([getattr(o, k) for o in outs]) for k in ("context_embeds", "response_embeds", "intent_logits")}
    loss = default_loss(reference, cat["context_embeds"], cat["response_embeds"], cat["intent_logits"], batch)
    loss.backward()
    bn_reference = {name: buffer.clone() for name, buffer in reference.image_tower.named_buffers()}
    assert not torch.equal(cat["context_embeds"], reference(**batch, return_loss=False).context_embeds)  # dropout on

    torch.manual_seed(123)
    cached_loss = cached_training_step(cached, batch, chunk_size=chunk)
    torch.testing.assert_close(cached_loss, loss.detach(), **TOL)
    _assert_same_grads(_grads(cached), _grads(reference))
    # BatchNorm running statistics are updated once per chunk, as by the reference, not twice.
    for name, buffer in cached.image_tower.named_buffers():
        torch.testing.assert_close(buffer, bn_reference[name], **TOL, msg=name)


def test_split_batch_keeps_rows_together(processor, batch):
    chunks = split_batch(batch, 3, tiny_processor().image_token_id)
    assert [c["input_ids"].size(0) for c in chunks] == [3, 3, 3, 1]
    image_token = processor.image_token_id
    for c in chunks:
        placeholders = int((c["input_ids"] == image_token).sum())
        assert (c["context_pixel_values"] is None and placeholders == 0) or c["context_pixel_values"].size(0) == placeholders
        n_image = int(c["response_modality"].sum())
        assert (0 if c["response_pixel_values"] is None else c["response_pixel_values"].size(0)) == n_image
        width = c["attention_mask"].size(1)
        assert int(c["attention_mask"][:, -1].sum()) > 0 and width <= batch["attention_mask"].size(1)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # PeftModel reads a deprecated transformers attribute
def test_dialclip_adapter(tmp_path):
    """DialCLIP (a PeftModel: frozen CLIP, context prompts read per-dialogue turns) through the same step."""
    from hf_dialret.modeling.processing_dialclip import DialCLIPProcessor
    from hf_dialret.prompts import build_dialclip_for_training, save_tiny_clip

    words = ["hello world", "a red ball", "blue square", "look at this photo", "nice dog", "green tree"]
    clip_dir = save_tiny_clip(tmp_path, words, hidden_size=32, projection_dim=16, max_text_length=16)
    clip_processor = DialCLIPProcessor.from_pretrained(clip_dir)
    red, blue = Image.new("RGB", (32, 32), "red"), Image.new("RGB", (32, 32), "blue")
    dialogues = [[{"speaker": "a", "text": "hello world"}, {"speaker": "b", "text": None, "image": red}, "a red ball"],
                 ["look at this photo", {"speaker": "a", "text": "nice dog", "image": blue}], ["blue square"],
                 ["green tree", "hello"], ["nice dog", "a red ball", "green tree"]]
    dialclip_batch = dict(clip_processor(dialogues, ["nice dog", blue, "hello world", red, "green tree"]))
    torch.manual_seed(0)
    model = build_dialclip_for_training(str(clip_dir)).train()
    plain_loss = _plain(model, dialclip_batch)
    plain = _grads(model)
    assert plain  # the adapter's prompts and experts are trainable
    model.zero_grad()
    torch.testing.assert_close(cached_training_step(model, dialclip_batch, chunk_size=2), plain_loss, **TOL)
    _assert_same_grads(_grads(model), plain)
