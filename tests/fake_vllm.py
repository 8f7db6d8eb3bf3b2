"""A stand-in `vllm` package for CPU tests of the vLLM backend (see tests/unit/test_vllm_backend.py).

    env, log = install_fake_vllm(tmp_path)   # env: PYTHONPATH and FAKE_VLLM_LOG for the worker

It has vllm's surface as the worker uses it: `LLM(model, **engine_args)`, `get_tokenizer()`,
`generate(prompts, sampling_params, use_tqdm=...)` with token-id prompts, `chat(...)`,
`SamplingParams(**kw)` and the engine's `llm_engine.model_config.max_model_len`
(40 tokens unless `max_model_len` is given). Like vLLM it rejects a whole call when one
prompt does not fit, and prints to stdout. Tokens are whitespace-separated words; a
model whose name starts with "base" has no chat template. It writes one JSON line per
engine load ({"llm": kwargs}) and per generate call ({"generate": n, "params", "prompts"})
to FAKE_VLLM_LOG. Model "crash" fails to load; model "dies" exits on its second call;
model "slow" starts an engine process of its own (logging {"pids": [worker, engine]})
and never finishes a call (logging {"busy": true} when it starts one); model "dead"
raises vLLM's EngineDeadError on every call. A message containing "[bad-template]"
makes the chat template raise (as a Jinja template's raise_exception does), and a
prompt containing "[reject]" makes `generate` reject its whole call.
"""

import textwrap
from pathlib import Path

FAKE_VLLM = textwrap.dedent("""
    import json, os
    __version__ = "0.0-fake"

    def _log(entry):
        with open(os.environ["FAKE_VLLM_LOG"], "a") as fh:
            fh.write(json.dumps(entry) + "\\n")

    class TemplateError(Exception):
        '''What jinja2 raises from a template's raise_exception.'''

    class EngineDeadError(Exception):
        '''vLLM's: the engine core process died; the engine is unusable from then on.'''

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class _Tokenizer:
        '''Whitespace tokens; a chat template unless the model is a "base" one.'''
        def __init__(self, template):
            self.chat_template = template
            self.vocab, self.words = {}, []

        def apply_chat_template(self, chat, tokenize=False, add_generation_prompt=True):
            if any("[bad-template]" in m["content"] for m in chat):
                raise TemplateError("Conversation roles must alternate user/assistant/user/assistant/...")
            return " ".join(f"<|{m['role']}|> {m['content']}" for m in chat) + " <|assistant|>"

        def encode(self, text, add_special_tokens=True):
            for w in text.split():
                if w not in self.vocab:
                    self.vocab[w] = len(self.words)
                    self.words.append(w)
            return [self.vocab[w] for w in text.split()]

        def decode(self, ids):
            return " ".join(self.words[i] for i in ids)

    class _Config:
        def __init__(self, n):
            self.max_model_len = n

    class _Engine:
        def __init__(self, n):
            self.model_config = _Config(n)

    class _Completion:
        def __init__(self, text):
            self.text, self.token_ids = text, text.split()

    class _Output:
        def __init__(self, ids, text):
            self.prompt_token_ids = ids
            self.outputs = [_Completion(text)]

    class LLM:
        def __init__(self, model, **kw):
            if model == "crash":
                raise RuntimeError("CUDA out of memory (fake)")
            _log({"llm": {"model": model, **kw}})
            if model == "slow":  # an engine process of its own, like vLLM's, and generation that takes long
                import subprocess, sys
                self.engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
                _log({"pids": [os.getpid(), self.engine.pid]})
            print("INFO fake engine ready")  # vLLM logs to stdout too
            self.model = model
            self.tokenizer = _Tokenizer(None if model.startswith("base") else "fake-template")
            self.llm_engine = _Engine(kw.get("max_model_len") or 40)
            self.calls = 0

        def get_tokenizer(self):
            return self.tokenizer

        def _check(self, lengths):
            limit = self.llm_engine.model_config.max_model_len
            for n in lengths:
                if n + 1 > limit:
                    raise ValueError(f"The decoder prompt (length {n}) plus the number of requested output "
                                     f"tokens (at least 1) is longer than the maximum model length of {limit}.")

        def generate(self, prompts, sampling_params=None, use_tqdm=True):
            self._check(len(p["prompt_token_ids"]) for p in prompts)
            self.calls += 1
            if self.model == "dead":
                raise EngineDeadError("EngineCore encountered an issue. See stack trace (above) for the root cause.")
            if any("[reject]" in self.tokenizer.decode(p["prompt_token_ids"]).split() for p in prompts):
                raise RuntimeError("fake engine rejected the call")
            if self.model == "slow":
                import time
                _log({"busy": True})
                time.sleep(300)
            if self.model == "dies" and self.calls == 2:
                os._exit(9)
            texts = [self.tokenizer.decode(p["prompt_token_ids"]) for p in prompts]
            _log({"generate": len(prompts), "params": sampling_params.kw, "prompts": texts})
            return [_Output(p["prompt_token_ids"], "critique of " + t.split("|>")[-2].split("<|")[0].strip()
                            if "|>" in t else "answer to " + t) for p, t in zip(prompts, texts)]

        def chat(self, conversations, sampling_params=None, use_tqdm=True):
            prompts = [self.tokenizer.encode(self.tokenizer.apply_chat_template(c)) for c in conversations]
            return self.generate([{"prompt_token_ids": p} for p in prompts], sampling_params, use_tqdm)
""")


def install_fake_vllm(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Write the package under tmp_path; returns (env for the worker, the call log's path)."""
    package = tmp_path / "fake" / "vllm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_VLLM)
    log = tmp_path / "fake_vllm.log"
    return {"PYTHONPATH": str(tmp_path / "fake"), "FAKE_VLLM_LOG": str(log)}, log
