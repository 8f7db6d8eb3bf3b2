"""Teacher prompt templates: exact paper text, versions, safe formatting."""

import pytest

from cft.critique.teachers import TEMPLATES, get_template, teacher_chat
from cft.critique.verdict import CONCLUSION_RIGHT, CONCLUSION_WRONG
from cft.generate import Sampling


def test_webinstruct_prompt_is_the_papers():
    t = TEMPLATES["webinstruct-cft-v1"]
    assert t.system == (
        "You are a science expert. A student is trying to solve a question, please explain briefly whether "
        "his solution is correct or not. Finally, conclude your judgement with 'Conclusion: right/wrong [END]'."
    )
    assert t.sampling == Sampling(temperature=0.3, top_p=0.95, max_new_tokens=3200)
    assert teacher_chat("webinstruct-cft-v1", "What is 2+2?", "4") == [
        {"role": "system", "content": t.system},
        {"role": "user", "content": "Question: What is 2+2?\n\nSolution: 4"},
    ]


def test_one_shot_prompt_asks_for_steps_boxed_answer_and_the_verdict_line():
    system = get_template("one-shot-cft-v1").system
    for needle in ("key mathematical concepts", "each step", "\\boxed{}", CONCLUSION_RIGHT, CONCLUSION_WRONG):
        assert needle in system


def test_braces_in_inputs_stay_literal():
    chat = teacher_chat("one-shot-cft-v1", "Simplify {x}^{2} and \\frac{1}{2}", "The answer is {solution}")
    assert chat[1]["content"] == "Question: Simplify {x}^{2} and \\frac{1}{2}\n\nStudent's solution: The answer is {solution}"


def test_every_template_is_keyed_by_its_version():
    assert all(name == t.version for name, t in TEMPLATES.items())


def test_unknown_version_lists_known_ones():
    with pytest.raises(ValueError, match="unknown teacher prompt version 'gpt-v9'.*one-shot-cft-v1, webinstruct-cft-v1"):
        teacher_chat("gpt-v9", "q", "s")
