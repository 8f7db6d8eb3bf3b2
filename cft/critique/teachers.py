"""Teacher prompts as versioned templates (docs/design.md, "The CFT recipe").

A version name is part of every critique row's id, so a prompt is never edited in
place: a changed prompt is a new entry here, and rows made with the old one stay
valid under the old name.
"""

from __future__ import annotations

from dataclasses import dataclass

from cft.generate.base import Sampling


@dataclass(frozen=True)
class TeacherTemplate:
    version: str
    system: str
    user: str  # str.format template with {question} and {solution}
    sampling: Sampling  # what the source recipe sampled the teacher with

    def chat(self, question: str, solution: str) -> list[dict[str, str]]:
        # format() substitutes once: braces inside the question or solution stay literal.
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user.format(question=question, solution=solution)},
        ]


# WebInstruct-CFT (arXiv 2501.17703): GPT-4o-2024-11-20, temperature 0.3, top_p 0.95, 3200 tokens.
WEBINSTRUCT_CFT_V1 = TeacherTemplate(
    version="webinstruct-cft-v1",
    system=(
        "You are a science expert. A student is trying to solve a question, please explain briefly "
        "whether his solution is correct or not. Finally, conclude your judgement with "
        "'Conclusion: right/wrong [END]'."
    ),
    user="Question: {question}\n\nSolution: {solution}",
    sampling=Sampling(temperature=0.3, top_p=0.95, max_new_tokens=3200),
)

# One-Shot CFT's step-checking critique, written in its spirit (not a verbatim copy).
ONE_SHOT_CFT_V1 = TeacherTemplate(
    version="one-shot-cft-v1",
    system=(
        "You are a meticulous mathematics teacher grading a student's solution.\n"
        "Critique the solution as follows:\n"
        "1. Identify the key mathematical concepts the question involves and the correct approach to solve it.\n"
        "2. Check each step of the student's solution in order: say whether the reasoning and the "
        "arithmetic of that step are correct, and why.\n"
        "3. If the solution is wrong, point out exactly where and why it goes wrong, then give a correct "
        "solution and put its final answer within \\boxed{}.\n"
        "Finally, conclude your judgement with exactly one line: 'Conclusion: right [END]' if the "
        "student's solution is correct, or 'Conclusion: wrong [END]' if it is not."
    ),
    user="Question: {question}\n\nStudent's solution: {solution}",
    sampling=Sampling(temperature=0.3, top_p=0.95, max_new_tokens=3200),
)

TEMPLATES: dict[str, TeacherTemplate] = {t.version: t for t in (WEBINSTRUCT_CFT_V1, ONE_SHOT_CFT_V1)}


def get_template(version: str) -> TeacherTemplate:
    try:
        return TEMPLATES[version]
    except KeyError:
        raise ValueError(
            f"unknown teacher prompt version {version!r} (known: {', '.join(sorted(TEMPLATES))})"
        ) from None


def teacher_chat(template_name: str, question: str, solution: str) -> list[dict[str, str]]:
    """The chat to send the teacher for one (question, solution) pair."""
    return get_template(template_name).chat(question, solution)
