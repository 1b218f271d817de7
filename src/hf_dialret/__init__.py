"""hf_dialret: multimodal dialogue response retrieval for the Hugging Face ecosystem."""

__version__ = "0.1.0"
