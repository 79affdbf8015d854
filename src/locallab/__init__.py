"""LocalLab: run large language models on your own machine and serve them over HTTP."""

__version__ = "0.1.0"
