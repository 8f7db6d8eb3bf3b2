"""Critic evaluation: verdicts parsed with the project's parser, scored against graded truth."""

import pytest

from cft.critique.templates import CFT_USER_TEMPLATE
from cft.evaluate.critic import critic_chat, critic_metrics, verdict_of


def test_the_critic_sees_the_cft_training_prompt():
    (message,) = critic_chat("1+1?", "It is 3.")
    assert message == {"role": "user", "content": CFT_USER_TEMPLATE.format(question="1+1?", solution="It is 3.")}


def test_verdicts_come_from_the_verdict_parser():
    assert verdict_of("Critique:\nThe sum is 2, not 3.\n\nConclusion: wrong [END]") == "wrong"
    assert verdict_of("**Conclusion: correct**") == "right"
    assert verdict_of("I am not sure.") is None


def test_metrics_count_missing_verdicts_as_misses():
    truth = [True, True, False, False, False, False]
    verdicts = ["right", None, "wrong", "wrong", "right", None]
    m = critic_metrics(truth, verdicts)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    # wrong is the positive class: precision 2/2, recall 2/4
    assert m["f1_wrong"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert m["no_verdict_rate"] == pytest.approx(2 / 6)
    assert m["wrong_fraction"] == pytest.approx(4 / 6)


def test_always_wrong_critic_is_not_rewarded_by_balance():
    truth = [True] * 2 + [False] * 8
    m = critic_metrics(truth, ["wrong"] * 10)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["balanced_accuracy"] == pytest.approx(0.5)


def test_undefined_values_are_none_not_zero():
    m = critic_metrics([True, True], [None, None])
    assert m["f1_wrong"] is None and m["accuracy"] == 0.0 and m["no_verdict_rate"] == 1.0
    assert critic_metrics([], [])["accuracy"] is None
    # wrong solutions that the critic never calls wrong: F1 is 0, not undefined
    assert critic_metrics([True, False, False], ["right", "right", None])["f1_wrong"] == 0.0
    with pytest.raises(ValueError):
        critic_metrics([True], [])
