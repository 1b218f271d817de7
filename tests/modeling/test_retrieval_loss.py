"""dialogue_retrieval_loss against a hand-written per-example reference on fixed tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hf_dialret.modeling.retrieval_loss import dialogue_retrieval_loss, modality_aware_scores


def _fixed_inputs():
    g = torch.Generator().manual_seed(0)
    context = F.normalize(torch.randn(5, 2, 8, generator=g), dim=-1)
    candidates = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    modality = torch.tensor([0, 1, 0, 1, 0])
    ids = torch.tensor([10, 20, 10, 21, 30])  # examples 0 and 2 share one text response
    intent = torch.randn(5, 2, generator=g)
    return context, candidates, modality, ids, intent


def reference_loss(context, candidates, modality, ids, scale, joint, intent=None, weights=(1.0, 1.0, 1.0)):
    """Plain-Python InfoNCE: example i's positive is candidate i; candidates of i's own response id (other than
    i) are not negatives; separate pools keep only candidates of i's modality."""
    per_example = []
    for i in range(len(modality)):
        def score(j):
            return float(context[i, int(modality[j])] @ candidates[j]) * scale

        pool = [j for j in range(len(modality)) if j == i or int(ids[j]) != int(ids[i])]
        if not joint:
            pool = [j for j in pool if int(modality[j]) == int(modality[i])]
        log_z = math.log(sum(math.exp(score(j)) for j in pool))
        per_example.append(log_z - score(i))
    if joint:
        loss = sum(per_example) / len(per_example)
    else:
        loss = 0.0
        for m, weight in ((0, weights[0]), (1, weights[1])):
            rows = [x for x, mm in zip(per_example, modality.tolist()) if mm == m]
            loss += weight * (sum(rows) / len(rows) if rows else 0.0)
    if intent is not None:
        ce = [math.log(sum(math.exp(float(v)) for v in intent[i])) - float(intent[i, int(modality[i])])
              for i in range(len(modality))]
        loss += weights[2] * sum(ce) / len(ce)
    return loss


@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.parametrize("use_ids", [True, False])
def test_loss_matches_reference(joint, use_ids):
    context, candidates, modality, ids, _ = _fixed_inputs()
    scale = torch.tensor(math.log(10.0))
    loss, logits = dialogue_retrieval_loss(
        context, modality, candidates, modality, scale, response_ids=ids if use_ids else None,
        candidate_ids=ids if use_ids else None, joint_pool=joint,
    )
    ref_ids = ids if use_ids else torch.arange(5)
    assert loss.item() == pytest.approx(reference_loss(context, candidates, modality, ref_ids, 10.0, joint), rel=1e-5)
    assert logits.shape == (5, 5)


def test_separate_pools_with_intent_and_weights_match_reference():
    context, candidates, modality, ids, intent = _fixed_inputs()
    weights = (0.5, 2.0, 0.3)
    loss, _ = dialogue_retrieval_loss(
        context, modality, candidates, modality, torch.tensor(math.log(20.0)), response_ids=ids, candidate_ids=ids,
        joint_pool=False, intent_logits=intent, text_loss_weight=weights[0], image_loss_weight=weights[1],
        intent_loss_weight=weights[2],
    )
    expected = reference_loss(context, candidates, modality, ids, 20.0, False, intent, weights)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_duplicate_masking_lowers_the_loss_and_separate_pools_ignore_the_other_modality():
    context, candidates, modality, ids, _ = _fixed_inputs()
    scale = torch.tensor(2.0)
    masked = dialogue_retrieval_loss(context, modality, candidates, modality, scale, response_ids=ids, candidate_ids=ids)[0]
    unmasked = dialogue_retrieval_loss(context, modality, candidates, modality, scale)[0]
    assert masked.item() < unmasked.item()  # a duplicate is no longer counted as a wrong answer
    # Moving the image candidates changes the joint loss of text examples, but not their separate-pool loss.
    moved = candidates.clone()
    moved[modality == 1] = -moved[modality == 1]

    def text_only(c, joint):
        return dialogue_retrieval_loss(context, modality, c, modality, scale, joint_pool=joint, image_loss_weight=0.0)[0]

    assert text_only(moved, False).item() == pytest.approx(text_only(candidates, False).item(), rel=1e-6)
    joint_rows = lambda c: torch.nn.functional.cross_entropy(  # noqa: E731
        modality_aware_scores(context, c, modality)[modality == 0] * scale.exp(), torch.tensor([0, 2, 4]))
    assert joint_rows(moved).item() != pytest.approx(joint_rows(candidates).item(), rel=1e-3)


def test_scores_use_the_query_of_each_candidates_modality():
    context = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    candidates = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    scores = modality_aware_scores(context, candidates, torch.tensor([0, 1]))
    assert scores.tolist() == [[1.0, 0.0]]
    with pytest.raises(ValueError, match="one query per response modality"):
        modality_aware_scores(context[:, 0], candidates, torch.tensor([0, 1]))


def test_absent_modality_keeps_the_graph_and_positive_index_selects_rows():
    context, candidates, _, _, _ = _fixed_inputs()
    context.requires_grad_(True)
    text_only = torch.zeros(5, dtype=torch.long)
    loss, _ = dialogue_retrieval_loss(context, text_only, candidates, text_only, torch.tensor(1.0), joint_pool=False)
    loss.backward()
    assert context.grad is not None and torch.isfinite(loss)
    # A larger gathered pool (e.g. from other processes): positives at rows 5..9 of a 10-row pool.
    pool = torch.cat([candidates.flip(0), candidates])
    pool_modality = torch.zeros(10, dtype=torch.long)
    shifted, _ = dialogue_retrieval_loss(
        context.detach(), text_only, pool, pool_modality, torch.tensor(1.0), positive_index=torch.arange(5, 10)
    )
    direct = F.cross_entropy(
        modality_aware_scores(context.detach(), pool, pool_modality) * math.e, torch.arange(5, 10)
    )
    assert shifted.item() == pytest.approx(direct.item(), rel=1e-6)


def test_one_modality_batch_against_a_mixed_pool_gives_a_finite_loss():
    # Image-only rows (e.g. one DDP rank's share) scored against a gathered pool that also holds texts: the text
    # term is empty and the masked logits hold finfo.min, which must not turn the loss into nan.
    context, candidates, _, _, _ = _fixed_inputs()
    context.requires_grad_(True)
    rows_modality = torch.ones(2, dtype=torch.long)
    pool_modality = torch.tensor([0, 1, 0, 1, 0])
    loss, _ = dialogue_retrieval_loss(
        context[:2], rows_modality, candidates, pool_modality, torch.tensor(1.0),
        positive_index=torch.tensor([1, 3]), joint_pool=False,
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(context.grad).all()
    expected = F.cross_entropy(
        modality_aware_scores(context.detach()[:2], candidates[[1, 3]], torch.ones(2, dtype=torch.long)) * math.e,
        torch.tensor([0, 1]),
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)



def direction_terms(context, candidates, modality, ids, scale, joint, reverse):
    """Plain-Python per-example InfoNCE terms of one direction. Forward: context i picks candidate i; reverse:
    response i picks context i, every context scored with its query for response i's modality. Either way the
    other side's members whose true response duplicates i's are not negatives, and separate pools keep only members
    of i's modality."""
    terms = []
    for i in range(len(modality)):
        def score(j):
            if reverse:
                return float(context[j, int(modality[i])] @ candidates[i]) * scale
            return float(context[i, int(modality[j])] @ candidates[j]) * scale

        pool = [j for j in range(len(modality)) if j == i or int(ids[j]) != int(ids[i])]
        if not joint:
            pool = [j for j in pool if int(modality[j]) == int(modality[i])]
        terms.append(math.log(sum(math.exp(score(j)) for j in pool)) - score(i))
    return terms


def pool_mean(terms, modality, joint):
    """The loss of per-example terms: their mean (joint pool) or the sum of the per-modality means."""
    if joint:
        return sum(terms) / len(terms)
    by_modality = [[t for t, m in zip(terms, modality.tolist()) if m == wanted] for wanted in (0, 1)]
    return sum(sum(rows) / len(rows) for rows in by_modality if rows)


@pytest.mark.parametrize("joint", [True, False])
def test_symmetric_loss_averages_both_directions(joint):
    context, candidates, modality, ids, _ = _fixed_inputs()
    scale = torch.tensor(math.log(10.0))
    loss, _ = dialogue_retrieval_loss(
        context, modality, candidates, modality, scale, response_ids=ids, candidate_ids=ids, joint_pool=joint,
        symmetric=True,
    )
    forward = pool_mean(direction_terms(context, candidates, modality, ids, 10.0, joint, False), modality, joint)
    reverse = pool_mean(direction_terms(context, candidates, modality, ids, 10.0, joint, True), modality, joint)
    assert forward == pytest.approx(reference_loss(context, candidates, modality, ids, 10.0, joint), rel=1e-6)
    assert abs(forward - reverse) > 1e-3  # the two directions differ, so the average is a real check
    assert loss.item() == pytest.approx((forward + reverse) / 2, rel=1e-5)


def test_symmetric_loss_over_a_larger_pool_uses_the_candidate_contexts():
    context, candidates, modality, ids, _ = _fixed_inputs()
    scale = torch.tensor(math.log(10.0))
    # Examples 1..3 against the pool of all 5 (as with candidates and contexts gathered from other processes): the
    # loss is the mean of those examples' terms of both directions of the full in-batch loss.
    local = [1, 2, 3]
    loss, _ = dialogue_retrieval_loss(
        context[local], modality[local], candidates, modality, scale, positive_index=torch.tensor(local),
        response_ids=ids[local], candidate_ids=ids, symmetric=True, candidate_contexts=context,
    )
    forward = direction_terms(context, candidates, modality, ids, 10.0, True, False)
    reverse = direction_terms(context, candidates, modality, ids, 10.0, True, True)
    expected = sum(forward[i] + reverse[i] for i in local) / (2 * len(local))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="needs candidate_contexts"):
        dialogue_retrieval_loss(context[local], modality[local], candidates, modality, scale,
                                positive_index=torch.tensor(local), symmetric=True)
    with pytest.raises(ValueError, match=r"candidate_contexts must have shape \(5, 2, dim\)"):
        dialogue_retrieval_loss(context[local], modality[local], candidates, modality, scale,
                                positive_index=torch.tensor(local), symmetric=True, candidate_contexts=context[local])


@pytest.mark.parametrize("symmetric", [False, True])
def test_loss_runs_in_fp32_under_bf16_autocast(symmetric) -> None:
    # bf16 embeddings (as a bf16-autocast forward returns them): the loss upcasts them and scores in fp32, so it
    # equals the fp32 loss on the same (bf16-rounded) values, not a bf16 matmul's rounding of it.
    context, candidates, modality, ids, intent = _fixed_inputs()
    context16, candidates16 = context.bfloat16(), candidates.bfloat16()
    scale = torch.tensor(math.log(50.0))
    kwargs = dict(response_ids=ids, candidate_ids=ids, symmetric=symmetric)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits = dialogue_retrieval_loss(context16, modality, candidates16, modality, scale, **kwargs)
    expected, expected_logits = dialogue_retrieval_loss(
        context16.float(), modality, candidates16.float(), modality, scale, **kwargs
    )
    assert loss.dtype == logits.dtype == torch.float32
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(logits, expected_logits, atol=1e-6, rtol=1e-6)
