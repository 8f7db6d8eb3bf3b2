"""The tiny default model is an ordinary HF directory: it loads with from_pretrained."""

import json

from cft.model.tiny import build_tiny_model


def test_build_save_and_load_like_any_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = ["What is $2+2$? The answer is \\boxed{4}."] * 50 + ["Solve for x: 3x = 12, so x = 4."] * 50
    out = build_tiny_model(tmp_path / "tiny", corpus_texts=texts, vocab_size=400, hidden_size=32, num_heads=2, intermediate_size=64)
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    text = "Solve for x: 3x = 12, so x = \\boxed{4}."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    # the locally trained encoding survives the save/load round trip unchanged
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text) / 2
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert model.config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
