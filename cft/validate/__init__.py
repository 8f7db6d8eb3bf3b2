"""Critique validation: Great Expectations suites, per-row checks and the quarantine.

`validate_critiques` / `validate_file` live in `cft.validate.critiques`; importing
this package does not import Great Expectations (that happens on first use).
"""

from cft.validate.critiques import ValidationFailed, ValidationResult, validate_critiques, validate_file

__all__ = ["ValidationFailed", "ValidationResult", "validate_critiques", "validate_file"]
