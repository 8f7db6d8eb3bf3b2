"""Critique Fine-Tuning pipeline."""
