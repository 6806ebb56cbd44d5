"""tuneforge: fine-tune LLMs end to end from one LLaMA-Factory-compatible YAML file."""

__version__ = "0.1.0"
