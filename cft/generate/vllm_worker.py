"""The vLLM side of `VLLMGenerator`: offline batch generation in its own process.

    python -m cft.generate.vllm_worker --requests req.jsonl --results out.jsonl [--parent-pid N]

`req.jsonl`: a header line {"config": {...}} then one {"i", "messages"} per chat.
`out.jsonl`: one {"i", "text", "prompt_tokens", "completion_tokens"} per chat,
appended chunk by chunk and flushed, so the parent can stream rows as they land,
then {"done": n}. Only the standard library and vllm are imported (this may run in
a separate environment that has vllm but not the rest of cft's dependencies).
Exit status 3 means vllm could not be imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

VLLM_MISSING = 3
MISSING_MARK = "CFT_VLLM_MISSING"


def _exit_with_parent(parent_pid: int) -> None:
    """An orphaned worker would hold the GPUs forever: leave when the parent is gone."""
    def watch() -> None:
        while True:
            time.sleep(2.0)
            if os.getppid() != parent_pid:
                os._exit(1)
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    if args.parent_pid:
        _exit_with_parent(args.parent_pid)
    try:
        import vllm
    except Exception as exc:  # noqa: BLE001 - any import failure means "no usable vllm here"
        print(f"{MISSING_MARK} {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return VLLM_MISSING

    with open(args.requests, encoding="utf-8") as fh:
        config = json.loads(fh.readline())["config"]
        requests = [json.loads(line) for line in fh if line.strip()]
    sampling = config["sampling"]
    llm = vllm.LLM(
        model=config["model"],
        tensor_parallel_size=config["tensor_parallel_size"],
        dtype=config["dtype"],
        gpu_memory_utilization=config["gpu_memory_utilization"],
        seed=sampling["seed"],
        **config.get("engine_options", {}),
    )
    params = vllm.SamplingParams(
        temperature=sampling["temperature"],
        top_p=sampling["top_p"],
        max_tokens=sampling["max_new_tokens"],
        seed=sampling["seed"],
    )
    chunk_size = max(1, int(config.get("chunk_size", 512)))
    with open(args.results, "a", encoding="utf-8") as out:
        for start in range(0, len(requests), chunk_size):
            chunk = requests[start : start + chunk_size]
            outputs = llm.chat([r["messages"] for r in chunk], params, use_tqdm=False)
            for request, output in zip(chunk, outputs, strict=True):
                completion = output.outputs[0]
                out.write(json.dumps({
                    "i": request["i"],
                    "text": completion.text,
                    "prompt_tokens": len(output.prompt_token_ids or []),
                    "completion_tokens": len(completion.token_ids),
                }, ensure_ascii=False) + "\n")
            out.flush()
        out.write(json.dumps({"done": len(requests)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
