"""Text-tower pooling: attention pooling starts as the masked mean, learns to read chosen tokens, ignores padding."""

from __future__ import annotations

import pytest
import torch

from hf_dialret import MultimodalDualRetrieverConfig, MultimodalDualRetrieverModel
from hf_dialret.modeling.towers import AttentionPooling, pool_hidden_states

MASK = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])


def test_attention_pooling_starts_as_the_masked_mean():
    hidden = torch.randn(3, 5, 8)
    pooled = AttentionPooling(8, num_heads=2)(hidden, MASK)
    torch.testing.assert_close(pooled, pool_hidden_states(hidden, MASK, "mean"))


def test_a_learned_query_reads_the_matching_token_and_never_the_padding():
    pool = AttentionPooling(4, num_heads=1)
    hidden = torch.zeros(1, 5, 4)
    hidden[0, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # the token the query looks for
    hidden[0, 0] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    hidden[0, 4] = torch.tensor([50.0, 0.0, 0.0, 0.0])  # padding, and even more "matching": must stay unread
    with torch.no_grad():
        pool.query.copy_(torch.tensor([[40.0, 0.0, 0.0, 0.0]]))
    pooled = pool(hidden, torch.tensor([[1, 1, 1, 1, 0]]))
    torch.testing.assert_close(pooled, hidden[0, 1:2], atol=1e-4, rtol=0)


def test_heads_pool_their_own_slices():
    pool = AttentionPooling(4, num_heads=2)
    hidden = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]])
    with torch.no_grad():
        pool.query.copy_(torch.tensor([[60.0, 0.0], [0.0, 0.0]]))  # head 0 reads token 0, head 1 averages
    pooled = pool(hidden, None)
    torch.testing.assert_close(pooled, torch.tensor([[1.0, 0.0, 0.5, 0.0]]), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        AttentionPooling(4, num_heads=3)


def test_attention_pooled_retriever_trains_its_queries_and_round_trips(tiny_config, tiny_batch, tmp_path):
    torch.manual_seed(0)
    model = MultimodalDualRetrieverModel(tiny_config(MultimodalDualRetrieverConfig, pooling="attention"))
    queries = [name for name, _ in model.named_parameters() if name.endswith("attention_pool.query")]
    assert queries == ["response_text.attention_pool.query", "context.text.attention_pool.query"]
    assert all(float(p.detach().abs().sum()) == 0.0 for n, p in model.named_parameters() if n in queries)
    model(**tiny_batch).loss.backward()
    assert all(float(p.grad.abs().sum()) > 0 for n, p in model.named_parameters() if n in queries)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in queries:
                param.normal_()  # a trained-looking query must survive save/load
    model.eval().save_pretrained(tmp_path)
    loaded = MultimodalDualRetrieverModel.from_pretrained(tmp_path).eval()
    assert loaded.config.pooling == "attention"
    with torch.no_grad():
        torch.testing.assert_close(loaded(**tiny_batch).logits, model(**tiny_batch).logits)
