"""Prompt texts of the CFT recipe (docs/design.md, "The CFT recipe"), versioned by name."""

# The paper's evaluation prompt (qwen25-math-cot): what students and trained models are asked.
COT_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."

# The training example of the paper's code: user asks for a critique, assistant answers.
CFT_USER_TEMPLATE = (
    "Please critique whether the following solution to the question is correct.\n\n"
    "Question:\n{question}\n\nSolution:\n{solution}\n\n"
)
CFT_ASSISTANT_PREFIX = "Critique:\n"


def cft_example(question: str, solution: str, critique: str) -> tuple[list[dict], list[dict]]:
    """(prompt, completion) chats of one CFT training row; the loss is on the completion."""
    prompt = [{"role": "user", "content": CFT_USER_TEMPLATE.format(question=question, solution=solution)}]
    completion = [{"role": "assistant", "content": CFT_ASSISTANT_PREFIX + critique}]
    return prompt, completion


def sft_example(question: str, solution: str) -> tuple[list[dict], list[dict]]:
    """(prompt, completion) chats of one SFT baseline row: imitate a solution."""
    return [{"role": "user", "content": question}], [{"role": "assistant", "content": solution}]
