"""The transformers engine (Hugging Face model folders with safetensors weights); needs the
`transformers` extra (torch and transformers). Importing this package imports torch."""

from locallab.engines.transformers.engine import TransformersEngine
from locallab.engines.transformers.loading import load_transformers_engine

__all__ = ["TransformersEngine", "load_transformers_engine"]
