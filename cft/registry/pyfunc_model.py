"""An MLflow pyfunc that answers math questions with a saved checkpoint."""

from __future__ import annotations

import mlflow.pyfunc

from cft.critique.templates import COT_SYSTEM_PROMPT


class CheckpointModel(mlflow.pyfunc.PythonModel):
    """Loads the Hugging Face checkpoint: the `checkpoint` artifact (log_weights: copy), or
    the folder a `checkpoint_ref` pointer in the model config resolves to (log_weights:
    reference; see cft.registry.checkpoint_ref)."""

    def load_context(self, context):
        from cft.generate.transformers_backend import TransformersGenerator

        ref = (context.model_config or {}).get("checkpoint_ref")
        if ref:
            from cft.registry.checkpoint_ref import resolve_checkpoint

            checkpoint = str(resolve_checkpoint(ref))
        else:
            checkpoint = context.artifacts["checkpoint"]
        self.generator = TransformersGenerator(checkpoint)

    def predict(self, context, model_input, params=None):
        from cft.generate.base import Sampling

        # MLflow hands a list of strings over as a one-column DataFrame.
        questions = list(model_input.iloc[:, 0]) if hasattr(model_input, "iloc") else list(model_input)
        max_new_tokens = int((params or {}).get("max_new_tokens", 512))
        chats = [[{"role": "system", "content": COT_SYSTEM_PROMPT}, {"role": "user", "content": q}] for q in questions]
        return [g.text for g in self.generator.generate(chats, Sampling(temperature=0.0, max_new_tokens=max_new_tokens))]


# MLflow "models from code": log_model is given this file's path, not a pickled object.
mlflow.models.set_model(CheckpointModel())
