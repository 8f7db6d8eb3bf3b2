"""Batched generation with transformers, on the CPU or a GPU."""

from __future__ import annotations

from cft.generate.base import Chat, Generation, Sampling
from cft.generate.chat import render_chat


class TransformersGenerator:
    name = "transformers"

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 16, dtype: str = "auto",
                 trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = model
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        # Decoder-only models must be left-padded for batched generation.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = torch.float32 if device == "cpu" and dtype == "auto" else dtype
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype,
                                                          trust_remote_code=trust_remote_code).to(device)
        self.model.eval()
        self.device = device
        self._usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}

    def usage(self) -> dict:
        """Tokens used so far, keyed by model like the other backends."""
        return {self.model_name: dict(self._usage)}

    def close(self) -> None:
        """Free the model (and its GPU memory) so the next model can load."""
        if getattr(self, "model", None) is None:
            return
        self.model = None
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self) -> TransformersGenerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        import torch

        if self.model is None:
            raise RuntimeError(f"TransformersGenerator({self.model_name!r}) is closed")
        # Sorting by length keeps padding low; results are put back in input order.
        texts = [render_chat(self.tokenizer, c) for c in chats]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: dict[int, Generation] = {}
        torch.manual_seed(sampling.seed)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            greedy = sampling.temperature == 0.0
            gen_kwargs = dict(
                max_new_tokens=sampling.max_new_tokens,
                do_sample=not greedy,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            if not greedy:
                gen_kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
            with torch.no_grad():
                generated = self.model.generate(**batch, **gen_kwargs)
            prompt_len = batch["input_ids"].shape[1]
            for row, i in enumerate(idx):
                new_tokens = generated[row, prompt_len:]
                n_new = int((new_tokens != self.tokenizer.pad_token_id).sum())
                text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
                results[i] = Generation(text, int(batch["attention_mask"][row].sum()), n_new, empty=not text.strip())
        out = [results[i] for i in range(len(texts))]
        self._usage["requests"] += len(out)
        self._usage["prompt_tokens"] += sum(g.prompt_tokens for g in out)
        self._usage["completion_tokens"] += sum(g.completion_tokens for g in out)
        return out
