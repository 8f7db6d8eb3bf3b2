"""Base class for every typed config section: unknown keys and wrong types are errors."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A params.yaml section. Extra keys are rejected so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())
