"""Base models: the tiny embedded default, and loading of any Hugging Face model."""
