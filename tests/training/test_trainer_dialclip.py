"""DialogueRetrievalTrainer evaluates DialCLIP with its context turns (the context_* keys of DialCLIPProcessor)."""

from __future__ import annotations

import pytest
import torch
from retriever_fixtures import tiny_corpus

from hf_dialret.data import DialogueRetrievalCollator, synthetic_vocabulary
from hf_dialret.modeling.processing_dialclip import DialCLIPProcessor
from hf_dialret.modeling.retrieval_loss import modality_aware_scores
from hf_dialret.prompts import build_dialclip_for_training, save_tiny_clip, tiny_clip_prompt_config
from hf_dialret.training import DialogueRetrievalTrainer, DialogueRetrievalTrainingArguments

QUERY_KEYS = ("input_ids", "attention_mask", "context_input_ids", "context_attention_mask", "context_text_batch_index")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # PeftModel reads a deprecated transformers attribute
def test_retrieval_report_scores_dialclip_queries_with_their_context(tmp_path) -> None:
    clip_dir = save_tiny_clip(tmp_path / "clip", synthetic_vocabulary(), hidden_size=32, projection_dim=16)
    processor = DialCLIPProcessor.from_pretrained(clip_dir)
    torch.manual_seed(0)
    model = build_dialclip_for_training(str(clip_dir), tiny_clip_prompt_config()).eval()
    test = tiny_corpus(num_train=4, num_test=12)["test"]
    collator = DialogueRetrievalCollator(processor)
    args = DialogueRetrievalTrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none",
                                              disable_tqdm=True, per_device_eval_batch_size=5)
    trainer = DialogueRetrievalTrainer(model=model, args=args, data_collator=collator, processing_class=processor)
    trainer.retrieval_report(test)

    batch = collator([test[i] for i in range(len(test))])
    candidates = processor(responses=[test[row]["response"] for row in trainer.last_eval_pool.rows])
    with torch.no_grad():
        responses = model(**candidates, return_loss=False).response_embeds
        with_context = model(**{key: batch[key] for key in QUERY_KEYS}, return_loss=False).context_embeds
        without = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).context_embeds
    modality = candidates["response_modality"]
    torch.testing.assert_close(trainer.last_eval_scores, modality_aware_scores(with_context, responses, modality))
    # The context changes the queries (fresh context prompts are random), so dropping it would show in the scores.
    assert not torch.allclose(with_context, without, atol=1e-4)
