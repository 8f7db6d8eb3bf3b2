"""The vLLM side of `VLLMGenerator`: one engine, loaded once, serving batches until stdin closes.

    python -m cft.generate.vllm_worker [--parent-pid N]

Protocol, JSON lines. The parent writes {"config": {...}} first, then any number of
chunks {"call": c, "sampling": {...}, "requests": [{"i": i, "messages": [...]}, ...]}.
The worker loads the engine, says {"ready": {"max_model_len": m, "vllm": version}},
then answers each chunk, in order, with one line per request:
{"call", "i", "text", "prompt_tokens", "completion_tokens"}, or {"call", "i", "error",
"reason"} for a request that cannot run (reason `prompt_too_long`, or `error`: its chat
template raised, or vLLM rejected its chunk). End of stdin: exit 0.

Prompts are rendered with the model's chat template (plain concatenation without
one, the rule every backend shares: `cft.generate.chat`) and tokenized here, so an
over-length prompt is failed alone: vLLM rejects the whole call when one prompt does
not fit, which would stop every rerun at the same chunk.

The protocol owns this process's real stdout; fd 1 is pointed at stderr before vllm
is imported, so vLLM's logs (and those of its worker processes) never mix with it.
Only the standard library, vllm and `cft.generate.chat` are imported: this may run
in an environment that has vllm but not the rest of cft's dependencies.
Exit status 3 means vllm could not be imported.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback

VLLM_MISSING = 3
MISSING_MARK = "CFT_VLLM_MISSING"


def _exit_with_parent(parent_pid: int) -> None:
    """An orphaned worker would hold the GPUs forever: leave when the parent is gone (killed,
    even by SIGKILL), taking vLLM's engine and tensor-parallel processes along when this
    worker leads their process group (the backend starts it in a session of its own)."""
    def watch() -> None:
        while True:
            time.sleep(2.0)
            if os.getppid() != parent_pid:
                if os.getpgid(0) == os.getpid():
                    os.killpg(os.getpid(), signal.SIGKILL)
                os._exit(1)
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def max_model_len(llm) -> int | None:
    """The engine's context length (vLLM keeps it on the model config; where depends on the version)."""
    for owner in (llm, getattr(llm, "llm_engine", None)):
        config = getattr(owner, "model_config", None)
        value = getattr(config, "max_model_len", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _failed(call: int, i: int, reason: str, error: str) -> dict:
    return {"call": call, "i": i, "reason": reason, "error": error}


def answer_chunk(llm, tokenizer, context: int | None, sampling_params, chunk: dict) -> list[dict]:
    """One result line per request of the chunk, in request order.

    A prompt whose chat template or encoding raises fails alone; a `generate` that raises
    fails the chunk's prompts (reason `error`): either would otherwise stop every rerun
    at the same chunk. A dead engine (vLLM's EngineDeadError) is re-raised: the worker
    exits with its traceback in the log instead of failing every later row.
    """
    from cft.generate.chat import render_chat

    call = chunk["call"]
    results: list[dict | None] = []
    prompts, slots = [], []
    for request in chunk["requests"]:
        try:
            ids = tokenizer.encode(render_chat(tokenizer, request["messages"]), add_special_tokens=False)
        except Exception as exc:  # noqa: BLE001 - this prompt's failure (a template's raise_exception, ...)
            results.append(_failed(call, request["i"], "error", f"rendering the prompt failed: {type(exc).__name__}: {exc}"))
            continue
        # vLLM needs room for at least one generated token; a longer prompt would make it reject the call.
        if context is not None and len(ids) >= context:
            results.append(_failed(call, request["i"], "prompt_too_long",
                                   f"prompt_too_long: the prompt has {len(ids)} tokens, the model's context "
                                   f"(max_model_len) is {context}"))
            continue
        slots.append(len(results))
        results.append(None)
        prompts.append({"prompt_token_ids": ids})
    try:
        outputs = llm.generate(prompts, sampling_params, use_tqdm=False) if prompts else []
    except Exception as exc:  # noqa: BLE001 - the chunk's failure, unless the engine is gone
        if type(exc).__name__ == "EngineDeadError":  # by name: its module moves between vLLM versions
            raise
        traceback.print_exc(file=sys.stderr)
        error = f"vllm generate failed for this chunk of {len(prompts)}: {type(exc).__name__}: {exc}"
        for slot in slots:
            results[slot] = _failed(call, chunk["requests"][slot]["i"], "error", error)
        return results  # type: ignore[return-value]
    for slot, output in zip(slots, outputs, strict=True):
        completion = output.outputs[0]
        results[slot] = {"call": call, "i": chunk["requests"][slot]["i"], "text": completion.text,
                         "prompt_tokens": len(output.prompt_token_ids or []),
                         "completion_tokens": len(completion.token_ids)}
    return results  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    if args.parent_pid:
        _exit_with_parent(args.parent_pid)
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # everything else written to stdout, here or in child processes, goes to the log
    sys.stdout = sys.stderr

    def send(message: dict) -> None:
        protocol.write(json.dumps(message, ensure_ascii=False) + "\n")

    header = sys.stdin.buffer.readline()
    if not header:
        return 0
    config = json.loads(header)["config"]
    try:
        import vllm
    except Exception as exc:  # noqa: BLE001 - any import failure means "no usable vllm here"
        print(f"{MISSING_MARK} {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return VLLM_MISSING

    engine = {k: config[k] for k in ("tensor_parallel_size", "dtype", "gpu_memory_utilization",
                                     "trust_remote_code", "enforce_eager")}
    if config.get("max_model_len"):
        engine["max_model_len"] = config["max_model_len"]
    llm = vllm.LLM(model=config["model"], **engine, **config.get("engine_args", {}))
    tokenizer = llm.get_tokenizer()
    context = max_model_len(llm) or config.get("max_model_len")
    if context is None:
        print("[cft.vllm] warning: cannot read the engine's max_model_len; over-length prompts are not "
              "checked (set max_model_len in params)", file=sys.stderr, flush=True)
    send({"ready": {"max_model_len": context, "vllm": getattr(vllm, "__version__", "?")}})
    protocol.flush()

    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return 0
        if not line.strip():
            continue
        chunk = json.loads(line)
        s = chunk["sampling"]
        params = vllm.SamplingParams(temperature=s["temperature"], top_p=s["top_p"],
                                     max_tokens=s["max_new_tokens"], seed=s["seed"])
        for result in answer_chunk(llm, tokenizer, context, params, chunk):
            send(result)
        protocol.flush()


if __name__ == "__main__":
    sys.exit(main())
