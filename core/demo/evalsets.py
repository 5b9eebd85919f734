"""The demo's eval sets: 30 date-rewriting cases (easy to edge) and 50 general questions the
base model must keep answering, written into evals/ of the demo workspace.
"""

from __future__ import annotations

import json

INSTRUCTION = "Rewrite the date as YYYY-MM-DD. Answer with the date only.\n"
# (id, date as written, ISO answer, tags). Hard: relative or ambiguous wording; edge: leap
# days, century boundaries, two-digit years.
DATE_CASES = [
    ("date-001", "March 3, 2021", "2021-03-03", ["easy"]),
    ("date-002", "July 4, 1976", "1976-07-04", ["easy"]),
    ("date-003", "December 25, 2019", "2019-12-25", ["easy"]),
    ("date-004", "January 1, 2000", "2000-01-01", ["easy"]),
    ("date-005", "5 November 2023", "2023-11-05", ["easy"]),
    ("date-006", "14 February 2022", "2022-02-14", ["easy"]),
    ("date-007", "Oct 31, 2018", "2018-10-31", ["easy"]),
    ("date-008", "Sept 9, 2009", "2009-09-09", ["easy"]),
    ("date-009", "2nd of August 2015", "2015-08-02", ["easy"]),
    ("date-010", "June 21st, 2024", "2024-06-21", ["easy"]),
    ("date-011", "Apr. 1, 2010", "2010-04-01", ["easy"]),
    ("date-012", "30 May 1990", "1990-05-30", ["easy"]),
    ("date-013", "03/15/2022 (US format)", "2022-03-15", ["medium"]),
    ("date-014", "15/03/2022 (UK format)", "2022-03-15", ["medium"]),
    ("date-015", "04.07.2022 (German format, day first)", "2022-07-04", ["hard"]),
    ("date-016", "Monday, 8 January 2024", "2024-01-08", ["medium"]),
    ("date-017", "the 1st of Jan '05", "2005-01-01", ["hard"]),
    ("date-018", "Christmas Eve 2021", "2021-12-24", ["hard"]),
    ("date-019", "New Year's Day 2030", "2030-01-01", ["hard"]),
    ("date-020", "the day after Christmas 2019", "2019-12-26", ["hard"]),
    ("date-021", "February 29, 2024", "2024-02-29", ["edge"]),
    ("date-022", "29 Feb 2000", "2000-02-29", ["edge"]),
    ("date-023", "December 31, 1999", "1999-12-31", ["edge"]),
    ("date-024", "1 January 1900", "1900-01-01", ["edge"]),
    ("date-025", "3/4/99 (US format)", "1999-03-04", ["edge", "hard"]),
    ("date-026", "12/1/05 (US format)", "2005-12-01", ["edge", "hard"]),
    ("date-027", "2023-7-9", "2023-07-09", ["edge"]),
    ("date-028", "20240315", "2024-03-15", ["edge", "hard"]),
    ("date-029", "the Ides of March, 2025", "2025-03-15", ["hard"]),
    ("date-030", "August the 8th, 2008", "2008-08-08", ["medium"]),
]
# General capability: prompts a fine-tune must not break (catches forgetting). Fifty, so that one
# case is 0.02 of the score: the gate's default tolerance then allows one case to flip, and a
# forgetting that reaches several questions is still caught (24 cases could not tell one flip
# from the tolerance: 0.042 a case).
GENERAL_CASES = [
    ("gen-001", "What is the capital of Japan? Answer in one word.", ["Tokyo"]),
    ("gen-002", "What is the capital of France? Answer in one word.", ["Paris"]),
    ("gen-003", "What is 2 + 2? Answer with a number.", ["4"]),
    ("gen-004", "Which planet is the largest in our solar system?", ["Jupiter"]),
    ("gen-005", "What is the chemical symbol for gold?", ["Au"]),
    ("gen-006", "What is the opposite of hot?", ["cold"]),
    ("gen-007", "How many days are in a week? Answer with a number.", ["7", "seven"]),
    ("gen-008", "Who wrote Romeo and Juliet?", ["Shakespeare"]),
    ("gen-009", "What color is a clear daytime sky?", ["blue"]),
    ("gen-010", "On which continent is Egypt?", ["Africa"]),
    ("gen-011", "How many legs does a spider have? Answer with a number.", ["8", "eight"]),
    ("gen-012", "What gas do plants take in from the air for photosynthesis?", ["carbon dioxide", "CO2"]),
    ("gen-013", "What is the capital of Italy? Answer in one word.", ["Rome"]),
    ("gen-014", "What is the capital of Germany? Answer in one word.", ["Berlin"]),
    ("gen-015", "What is the capital of Spain? Answer in one word.", ["Madrid"]),
    ("gen-016", "What is the capital of England? Answer in one word.", ["London"]),
    ("gen-017", "What is the capital of Canada? Answer in one word.", ["Ottawa"]),
    ("gen-018", "What is 3 + 5? Answer with a number.", ["8", "eight"]),
    ("gen-019", "What is 5 x 2? Answer with a number.", ["10", "ten"]),
    ("gen-020", "How many hours are in a day? Answer with a number.", ["24"]),
    ("gen-021", "How many months are in a year? Answer with a number.", ["12", "twelve"]),
    ("gen-022", "Which animal says meow?", ["cat"]),
    ("gen-023", "What is the largest ocean on Earth?", ["Pacific"]),
    ("gen-024", "What is the boiling point of water in degrees Celsius?", ["100"]),
    ("gen-025", "What is the capital of China? Answer in one word.", ["Beijing"]),
    ("gen-026", "What is the capital of the Netherlands? Answer in one word.", ["Amsterdam"]),
    ("gen-027", "What is the capital of South Korea? Answer in one word.", ["Seoul"]),
    ("gen-028", "What is 4 + 4? Answer with a number.", ["8", "eight"]),
    ("gen-029", "What is 10 - 3? Answer with a number.", ["7", "seven"]),
    ("gen-030", "What is 6 x 2? Answer with a number.", ["12", "twelve"]),
    ("gen-031", "How many legs does a bird have? Answer with a number.", ["2", "two"]),
    ("gen-032", "How many legs does a dog have? Answer with a number.", ["4", "four"]),
    ("gen-033", "What is the chemical formula of table salt?", ["NaCl"]),
    ("gen-034", "Who was the first president of the United States?", ["Washington"]),
    ("gen-035", "Which planet do we live on?", ["Earth"]),
    ("gen-036", "What is the opposite of day?", ["night"]),
    ("gen-037", "What is the opposite of open?", ["close", "shut"]),
    ("gen-038", "What color do you get by mixing blue and yellow?", ["green"]),
    ("gen-039", "Which animal is known as the king of the jungle?", ["lion"]),
    ("gen-040", "What is the largest country in the world by area?", ["Russia"]),
    ("gen-041", "What do plants need from the sun to grow?", ["light"]),
    ("gen-042", "Which ocean lies between Europe and North America?", ["Atlantic"]),
    ("gen-043", "What is the capital of the United States?", ["Washington"]),
    ("gen-044", "Who described gravity after seeing an apple fall?", ["Newton"]),
    ("gen-045", "What is the main language spoken in Mexico?", ["Spanish"]),
    ("gen-046", "How many planets are in the solar system? Answer with a number.", ["8", "eight"]),
    ("gen-047", "What is the smallest prime number? Answer with a number.", ["2", "two"]),
    ("gen-048", "Which organ pumps blood through the body?", ["heart"]),
    ("gen-049", "What is the largest desert in Africa?", ["Sahara"]),
    ("gen-050", "How many days are in a leap year? Answer with a number.", ["366"]),
]
# An ISO date is 10 characters (about 11 tokens with the end of turn); the general answers
# come within the first sentence. Tighter limits than the 64-token default keep a rambling
# base model from dominating the eval time and the latency measurement.
TASK_MAX_NEW_TOKENS = 16
GENERAL_MAX_NEW_TOKENS = 32


def task_lines() -> list[str]:
    lines = [json.dumps({"_set": {"max_new_tokens": TASK_MAX_NEW_TOKENS}})]
    for case_id, written, answer, tags in DATE_CASES:
        lines.append(json.dumps({"id": case_id, "input": INSTRUCTION + written, "expected": answer,
                                 "scorer": "exact", "tags": tags}))
    return lines


def general_lines() -> list[str]:
    return [json.dumps({"_set": {"max_new_tokens": GENERAL_MAX_NEW_TOKENS}})] + [
        json.dumps({"id": case_id, "input": prompt, "expected": answers, "scorer": "contains_any",
                    "tags": ["general"]})
        for case_id, prompt, answers in GENERAL_CASES]
