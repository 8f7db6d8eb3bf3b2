"""Critique Fine-Tuning pipeline."""

from pathlib import Path

# The project checkout this package runs from (editable install): shipped configs and
# data are found here when a command runs from another directory.
REPO_ROOT = Path(__file__).resolve().parents[1]
