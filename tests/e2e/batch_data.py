"""The questions and the `ask` call the end-to-end batch tests share."""

from __future__ import annotations

import json

from tests.helpers import ragfleet

MODELS = ["smollm2-135m", "gemma3-270m"]
QUESTIONS = [
    {"id": "billing", "question": "What protection does Contoso offer against balance billing?",
     "reference": "Contoso offers a balance billing protection through the Northwind Standard "
                  "plan, which protects employees from unexpected costs. [Northwind_Standard_"
                  "Benefits_Details.pdf#page=7]"},
    {"id": "network", "question": "what is in-network mean for Northwind Health?",
     "reference": "In-network providers have agreed to accept the payment offered by "
                  "Northwind Health."},
    # the same text under another id: answered once, reported for both ids
    {"id": "network-again", "question": "what is in-network mean for Northwind Health?",
     "reference": "Providers that accept Northwind Health's payment."},
    {"id": "no-reference", "question": "Does the plan cover eye exams?"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def ask(env, questions_path, *extra, timeout=900):
    return ragfleet("ask", str(questions_path), "-c", "nw", "-m", MODELS[0], "-m", MODELS[1],
                    "--top-k", "2", "--max-tokens", "24", *extra, env=env, timeout=timeout)
