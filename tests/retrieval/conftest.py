"""Tiny retrievers, saved model directories and candidate pools for the serving tests (built once per session)."""

from __future__ import annotations

import pytest
import torch
from retrieval_helpers import TEXTS, image


def _model(model_class, config_class, tiny_config, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return model_class(tiny_config(config_class, **kwargs)).eval()


@pytest.fixture(scope="session")
def mdr_model(tiny_config):
    from hf_dialret import MultimodalDualRetrieverConfig, MultimodalDualRetrieverModel

    return _model(MultimodalDualRetrieverModel, MultimodalDualRetrieverConfig, tiny_config)


@pytest.fixture(scope="session")
def dr_model(tiny_config):
    from hf_dialret import DualRetrieverConfig, DualRetrieverModel

    return _model(DualRetrieverModel, DualRetrieverConfig, tiny_config)


@pytest.fixture(scope="session")
def make_model(tiny_config):
    """Factory for other variants: ``make_model("mdr", seed=1, projection_dim=8)``."""
    import hf_dialret

    def build(name: str, seed: int = 0, **kwargs):
        config_class, model_class = hf_dialret.ARCHITECTURES[name]
        return _model(model_class, config_class, tiny_config, seed, **kwargs)

    return build


@pytest.fixture(scope="session")
def image_files(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("pool_images")
    paths = []
    for seed in range(3):
        path = folder / f"photo{seed}.png"
        image(100 + seed).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="session")
def mdr_dir(tmp_path_factory, mdr_model, tiny_processor) -> str:
    """A saved MDR checkpoint with its processor, as `hf-dialret train` leaves it."""
    path = tmp_path_factory.mktemp("mdr_model")
    mdr_model.save_pretrained(path)
    tiny_processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def dr_dir(tmp_path_factory, dr_model, tiny_processor) -> str:
    path = tmp_path_factory.mktemp("dr_model")
    dr_model.save_pretrained(path)
    tiny_processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def mdr_index_dir(tmp_path_factory, mdr_dir, image_files) -> str:
    """An index of TEXTS + image_files built with the *loaded* MDR checkpoint (it records the model's directory)."""
    from hf_dialret.retrieval import ResponseIndex
    from hf_dialret.retrieval.loading import load_retriever

    model, processor = load_retriever(mdr_dir, device="cpu")
    path = tmp_path_factory.mktemp("indexes") / "mdr"
    ResponseIndex.build(model, processor, texts=TEXTS, images=image_files, show_progress=False).save(path)
    return str(path)
