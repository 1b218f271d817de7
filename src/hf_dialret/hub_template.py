"""Text pieces of the model cards written by :mod:`hf_dialret.hub`: the Jinja template, per-architecture
descriptions, usage snippets and citations. Kept apart from the logic so that wording changes stay out of code review
of the push path. A Python module rather than a data file so that it ships in every install without package data.
"""

from __future__ import annotations

#: Jinja template for ``huggingface_hub.ModelCard.from_template`` (``card_data`` renders the YAML header).
MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ summary }}

This model was trained and published with `hf_dialret`, a Hugging Face plugin for multimodal dialogue response
retrieval: given a dialogue history (text turns, possibly with images), rank a pool of candidate responses that
mixes text replies and images.

## Model details

- **Architecture:** `{{ architecture }}` ({{ architecture_title }}). {{ architecture_description }}
- **Inference:** {{ retrieval_mode }}
- **Embedding size:** {{ dim }} (L2-normalised; score = cosine similarity)
{%- if base_model %}
- **Base model:** [`{{ base_model }}`](https://huggingface.co/{{ base_model }})
{%- endif %}
- **Backbones:**
{%- for b in backbones %}
  - {{ b.role }}: `{{ b.name }}` ({{ b.model_type }})
{%- endfor %}

### Parameters

| part | parameters |
|---|---:|
| total | {{ "{:,}".format(parameters.total) }} |
| trainable | {{ "{:,}".format(parameters.trainable) }} ({{ trainable_percent }}) |
{%- for name, count in parameters.components.items() %}
| `{{ name }}` | {{ "{:,}".format(count) }} |
{%- endfor %}

## Training data

{{ training_data }}
{%- if training_details %}

| setting | value |
|---|---|
{%- for key, value in training_details.items() %}
| {{ key }} | {{ value }} |
{%- endfor %}
{%- endif %}

## Evaluation

{% if results_table -%}
Results on **{{ eval_dataset }}** ({{ eval_split }} split). Recall@k is the share of dialogues whose true response is
among the top k of the candidate pool (ties counted pessimistically); MRR is the mean reciprocal rank.

{{ results_table }}
{%- if plot_file %}

![Recall@k]({{ plot_file }})
{%- endif %}
{%- else -%}
No evaluation results were recorded for this checkpoint.
{%- endif %}

## Usage

Needs the `hf_dialret` package (it registers the architectures, the processor and the pipeline task).

```python
{{ usage }}
```

## Citation

```bibtex
{{ citation }}
```
"""

ARCHITECTURES: dict[str, tuple[str, str, str]] = {
    # class name: (title, what it is, how it retrieves)
    "DualRetrieverModel": (
        "DR, Dual Retriever",
        "One context encoder per response modality plus a separate intent classifier.",
        "two-step: the intent classifier predicts whether the next response is a text or an image, then that "
        "modality's candidate pool is searched.",
    ),
    "SharedDualRetrieverModel": (
        "SDR, Shared Dual Retriever",
        "One context encoder shared by text retrieval, image retrieval and the intent head.",
        "two-step: the intent head predicts the response modality, then that modality's pool is searched.",
    ),
    "MultimodalDualRetrieverModel": (
        "MDR, Multimodal Dual Retriever",
        "One context encoder; text and image responses compete in one embedding space, with no intent head.",
        "end-to-end: one ranked pool of text and image candidates.",
    ),
    "DialCLIPModel": (
        "DialCLIP",
        "A frozen CLIP with trainable domain prompts, context prompts and a mixture of projection experts, "
        "shipped as a PEFT adapter.",
        "end-to-end: one ranked pool of text and image candidates, each scored by its retrieval type's expert.",
    ),
}

_JANG_2025 = """@article{jang2025integration,
  title   = {On the Effectiveness of Integration Methods for Multimodal Dialogue Response Retrieval},
  author  = {Jang, Seongbo and others},
  journal = {arXiv preprint arXiv:2506.11499},
  year    = {2025},
  url     = {https://arxiv.org/abs/2506.11499}
}"""

_YIN_2024 = """@inproceedings{yin2024dialclip,
  title     = {DialCLIP: Empowering CLIP as Multi-Modal Dialog Retriever},
  author    = {Yin, Zhichao and others},
  booktitle = {IEEE International Conference on Acoustics, Speech and Signal Processing (ICASSP)},
  year      = {2024},
  eprint    = {2401.01076},
  url       = {https://arxiv.org/abs/2401.01076}
}"""

CITATIONS: dict[str, str] = {
    "DualRetrieverModel": _JANG_2025,
    "SharedDualRetrieverModel": _JANG_2025,
    "MultimodalDualRetrieverModel": _JANG_2025,
    "DialCLIPModel": _YIN_2024,
}

#: Usage for full models: AutoModel + AutoProcessor (hf_dialret registers the classes; without hf_dialret,
#: ``trust_remote_code=True`` loads the modeling code shipped in the repository).
USAGE_MODEL = '''import hf_dialret  # registers the architectures and the "dialogue-response-retrieval" pipeline
from transformers import AutoModel, AutoProcessor, pipeline
from hf_dialret.retrieval import ResponseIndex

model = AutoModel.from_pretrained("{repo_id}")
processor = AutoProcessor.from_pretrained("{repo_id}")

# Encode a candidate pool once (texts, image files or PIL images), then search it with dialogues.
index = ResponseIndex.build(model, processor, texts=["Sounds great!", "Where was this taken?", "I love hiking too."])
for hit in index.search([["I went hiking last weekend.", "Nice! Any photos?"]], k=2)[0]:
    print(hit.modality, round(hit.score, 3), hit.value)
index.save("my-index")  # reload with ResponseIndex.load("my-index", model, processor)

# Or as a transformers pipeline:
retriever = pipeline("dialogue-response-retrieval", model="{repo_id}", index="my-index", device="cpu")
print(retriever(["I went hiking last weekend.", "Nice! Any photos?"], top_k=2))'''

#: Usage for DialCLIP adapters: the base CLIP is loaded first, then the adapter (needs hf_dialret installed).
USAGE_ADAPTER = '''import hf_dialret  # registers the DialCLIP PEFT method and the pipeline task
from transformers import pipeline
from hf_dialret.retrieval import ResponseIndex
from hf_dialret.retrieval.loading import load_retriever

model, processor = load_retriever("{repo_id}", device="cpu")  # base CLIP "{base_model}" + this adapter

index = ResponseIndex.build(model, processor, texts=["Sounds great!", "Where was this taken?", "I love hiking too."])
for hit in index.search([["I went hiking last weekend.", "Nice! Any photos?"]], k=2)[0]:
    print(hit.modality, round(hit.score, 3), hit.value)

retriever = pipeline("dialogue-response-retrieval", model=model, processor=processor, index=index, device="cpu")
print(retriever(["I went hiking last weekend.", "Nice! Any photos?"], top_k=2))'''
