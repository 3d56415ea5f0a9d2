"""Tests of the prompt classifier (`labrouter.core.classify`).

Table-driven, fast, no sleeps, no timing assertions (speed is measured in
bench/classifier.py). The prompts are written for these tests, not taken from the
evaluation data, so they check that the rules generalise.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import json
import math
import re
from pathlib import Path

import pytest

from labrouter.core.classify import (
    BUILTIN_ROUTES,
    Classification,
    Classifier,
    classify,
)
from labrouter.core.classify_model import (
    MODEL_RESOURCE,
    LinearModel,
    default_model,
    text_features,
    tokens,
)

_spec = importlib.util.spec_from_file_location(
    "baseline", Path(__file__).resolve().parents[1] / "bench" / "baseline.py"
)
assert _spec and _spec.loader
_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_baseline)
baseline_route = _baseline.baseline_route

# --------------------------------------------------------------------------- sense
# Words that a substring router takes for code, vision or reasoning, used in their
# everyday sense: all quick.
EVERYDAY_SENSE = [
    "I'm teaching a yoga class on Saturday morning, can you suggest a 10 minute warm-up?",
    "Write a short speech for a social function at my company next week.",
    "Before we get into details, let's talk about the big picture for the team this year.",
    "How can a small bakery improve its brand image on a tight budget?",
    "There's a python in the garden, who should I call to remove it safely?",
    "Compare these two hotels for a family holiday: the Grand in Nice and the Ritz in Rome.",
    "What is the function of the liver in the human body?",
    "Describe the class system in Victorian England.",
    "Paint a picture in words of a quiet harbour at dawn.",
    "My java tastes burnt every morning. Any tips for a better cup of coffee?",
    "Analyze the themes of loneliness in Of Mice and Men.",
    "Evaluate the pros and cons of renting versus buying a flat in Berlin.",
    "Can you explain what a dress code of smart casual means for a wedding?",
    "Write a script for a 30 second radio ad about our summer sale.",
    "Suggest a fitness program for a beginner who wants to run 5k.",
    "Write a short waltz in C major for a beginner pianist.",
    "Convert 30 degrees to C and tell me what to wear.",
]


@pytest.mark.parametrize("prompt", EVERYDAY_SENSE)
def test_everyday_sense_is_quick(prompt: str) -> None:
    result = classify(prompt)
    assert result.route == "quick", (prompt, result)


def test_baseline_gets_the_everyday_sense_wrong() -> None:
    # The reason for this module: the article's router takes these for other routes.
    wrong = [p for p in EVERYDAY_SENSE if baseline_route(p) != "quick"]
    assert len(wrong) >= 8


# --------------------------------------------------------------------------- code shape
CODE_BY_SHAPE = {
    "fence": "```\nconst total = items.reduce((a, b) => a + b, 0);\nconsole.log(total);\n```",
    "python indentation": (
        "for row in rows:\n    if row.status == 'done':\n        finished.append(row.id)\n"
        "    else:\n        pending += 1\n"
    ),
    "braces and semicolons": (
        "int main(void) {\n    int x = 4;\n    printf(\"%d\\n\", x * 2);\n    return 0;\n}\n"
    ),
    "rust fn": "fn area(w: u32, h: u32) -> u32 {\n    w * h\n}",
    "arrow function": "const double = (n) => n * 2;\nexport default double;",
    "python traceback": (
        "Traceback (most recent call last):\n  File \"/srv/app/main.py\", line 41, in <module>\n"
        "    run()\n  File \"/srv/app/main.py\", line 12, in run\n    cfg = load(path)\n"
        "FileNotFoundError: [Errno 2] No such file or directory: 'settings.toml'"
    ),
    "java stack trace": (
        "Exception in thread \"main\" java.lang.NullPointerException\n"
        "    at com.shop.cart.Cart.total(Cart.java:57)\n"
        "    at com.shop.Main.main(Main.java:14)"
    ),
    "gcc error": (
        "src/parse.c:88:17: error: expected ';' before '}' token\n"
        "   88 |     return count\n      |                 ^\n"
    ),
    "rustc error": (
        "error[E0382]: borrow of moved value: `v`\n --> src/main.rs:5:20\n"
        "  |\n4 |     let w = v;\n"
    ),
    "sql": (
        "SELECT c.name, COUNT(o.id) AS orders\nFROM customers c\nLEFT JOIN orders o ON "
        "o.customer_id = c.id\nGROUP BY c.name\nORDER BY orders DESC;"
    ),
    "shell one-liner": "find . -name '*.log' -mtime +7 | xargs rm -f",
    "shell prompt": "$ docker compose up -d\n$ docker logs -f web | grep -i error",
    "yaml": (
        "services:\n  web:\n    image: nginx:1.25\n    ports:\n      - \"8080:80\"\n"
        "    volumes:\n      - ./site:/usr/share/nginx/html\n"
    ),
    "dockerfile": (
        "FROM python:3.12-slim\nWORKDIR /app\nCOPY requirements.txt .\n"
        "RUN pip install -r requirements.txt\nCMD [\"python\", \"serve.py\"]"
    ),
    "ini config": "[server]\nhost = 0.0.0.0\nport = 8443\n\n[database]\nurl = postgres://db/app\n",
    "diff": (
        "diff --git a/app.py b/app.py\nindex 3b18e51..a9c2f04 100644\n--- a/app.py\n"
        "+++ b/app.py\n@@ -10,7 +10,7 @@ def handler(req):\n-    return None\n+    return {}\n"
    ),
    "merge conflict": (
        "<<<<<<< HEAD\ntimeout = 30\n=======\ntimeout = 60\n>>>>>>> feature/retry\n"
    ),
    "go func": "func (s *Server) Start(port int) error {\n\treturn s.listen(port)\n}",
    "html": "<div class=\"card\">\n  <h2>Title</h2>\n  <p>Body text</p>\n</div>",
}


@pytest.mark.parametrize("name", sorted(CODE_BY_SHAPE))
def test_code_is_recognised_by_shape(name: str) -> None:
    result = classify(CODE_BY_SHAPE[name])
    assert result.route == "code", (name, result)
    assert any(r.startswith("code:") for r in result.reasons)


CODE_IN_WORDS = [
    "Write a function that returns the n-th Fibonacci number using memoization.",
    "Implement a min-heap in Java with insert and extract-min.",
    "Can you write a bash script to back up my home directory every night?",
    "Write a regex that matches UK postcodes.",
    "Refactor this into smaller functions:\n\ndef go(x):\n    y = x * 2\n    return y + 1",
    "Recursively delete all .pyc files under the current directory.",
    "Count the lines in every .csv file in this folder and sort them by size.",
    "Show the disk usage of each subdirectory of /var, largest first.",
    "Create a Python class that represents a bank account with deposit and withdraw methods.",
    "Give me a SQL query that lists customers who never placed an order.",
    "Why does this crash?\n\nlet v = vec![1, 2, 3];\nlet w = v;\nprintln!(\"{:?}\", v);",
    "How can I squash my last three git commits into one before I push the branch?",
    "What does tar -xzvf do to an archive?",
    "You are given a string s of brackets. Return true if every bracket is closed in order.",
    "Write a CSS rule that makes every link in the footer grey.",
]


@pytest.mark.parametrize("prompt", CODE_IN_WORDS)
def test_code_requests(prompt: str) -> None:
    result = classify(prompt)
    assert result.route == "code", (prompt, result)


# --------------------------------------------------------------------------- reasoning
REASONING = {
    "word problem": (
        "A baker makes 14 loaves in the morning and twice as many in the afternoon. She sells "
        "30 loaves. How many loaves are left at the end of the day?"
    ),
    "word problem with money": (
        "Tickets cost $12 for adults and $7 for children. A family of 2 adults and 3 children "
        "pays with a $50 note. How much change do they get?"
    ),
    "equation": "Solve for x: 3x + 7 = 2x - 5",
    "calculus": "Find the derivative of f(x) = x^3 * sin(x).",
    "probability": (
        "If I roll two fair dice, what is the probability that the sum is at least 10?"
    ),
    "proof": "Prove that the square root of 2 is irrational.",
    "logic puzzle": (
        "Anna is taller than Ben. Ben is taller than Carl. Is Carl taller than Anna?"
    ),
    "knights and knaves": (
        "On an island, knights always tell the truth and knaves always lie. A says: "
        "'B is a knave.' B says: 'We are both knights.' Who is what?"
    ),
    "multiple choice deduction": (
        "Three boxes sit in a row: red, blue, green. The blue box is to the left of the red "
        "box. The green box is the second from the left.\nOptions:\n(A) The red box is first\n"
        "(B) The blue box is first\n(C) The green box is first"
    ),
    "boolean expression": "not ( True and False ) or False and True is",
    "arithmetic expression": "((7 - 3) * 5 + 12 / 4) =",
    "constraint planning": (
        "Schedule five talks into three rooms so that no two talks by the same speaker are "
        "at the same time, Dana must not speak before 10am, and each room is used at least "
        "once."
    ),
    "fermi estimate": (
        "Roughly how many piano tuners are there in Chicago? Explain your reasoning "
        "step by step."
    ),
}


@pytest.mark.parametrize("name", sorted(REASONING))
def test_reasoning_is_recognised_by_shape(name: str) -> None:
    result = classify(REASONING[name])
    assert result.route == "reasoning", (name, result)


# --------------------------------------------------------------------------- vision
@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "How many people are in this?",
        "What's the total?",
        "def f(x):\n    return x",  # even code: only a vision model can see the image
    ],
)
def test_an_attached_image_means_vision(prompt: str) -> None:
    result = classify(prompt, image=True)
    assert result.route == "vision"
    assert result.has_image is True
    assert "vision: an image is attached" in result.reasons


@pytest.mark.parametrize(
    "prompt",
    [
        "What does this screenshot show? The button seems to be in the wrong place.",
        "Describe the chart above and tell me which quarter had the best sales.",
        "Can you read the handwriting in the attached photo?",
        "Explain the following diagram of the network to me.",
    ],
)
def test_requests_about_a_picture_are_vision(prompt: str) -> None:
    assert classify(prompt).route == "vision"


# --------------------------------------------------------------------------- quick
QUICK = [
    "Summarize this email in two sentences: Hi team, the offsite moves to Thursday because "
    "the venue double-booked. Lunch is still provided. Please update your calendars.",
    "Translate 'where is the train station' into Portuguese.",
    "Give me five name ideas for a coffee shop by the sea.",
    "What does the error 'ECONNREFUSED' mean?",
    "What does this error message mean: permission denied (publickey)",
    "What are the main differences between Rust and Go?",
    "Who won the Tour de France in 1998?",
    "How many moons does Mars have?",
    "Rewrite this to sound friendlier: Send me the report by 5pm.",
    "Write a haiku about autumn rain.",
]


@pytest.mark.parametrize("prompt", QUICK)
def test_quick_requests(prompt: str) -> None:
    result = classify(prompt)
    assert result.route == "quick", (prompt, result)


# --------------------------------------------------------------------------- mixed signals
def test_mixed_signals_prefer_the_cheaper_route_with_a_reason() -> None:
    # Weak programming vocabulary next to a clear arithmetic question: reasoning, not code.
    prompt = (
        "Our API serves 1200 requests per minute and each request takes 50 ms of CPU. "
        "How many CPU cores are busy on average?"
    )
    result = classify(prompt)
    assert result.route == "reasoning", result
    assert result.runner_up in {"code", "quick"}


def test_strong_code_evidence_beats_a_cheaper_route() -> None:
    prompt = (
        "Fix this function so it returns the average:\n\n"
        "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n"
        "    return total / len(x)\n"
    )
    result = classify(prompt)
    assert result.route == "code"
    assert result.scores["code"] > result.scores["reasoning"]


@pytest.mark.parametrize(
    "prompt",
    [
        "Write a function to compute the probability of at least k heads in n coin tosses.",
        "Write a function that solves the quadratic equation ax^2 + bx + c = 0.",
        "Write a Python function to find the area of a triangle from its three sides.",
    ],
)
def test_asking_for_code_about_maths_is_code(prompt: str) -> None:
    # The deliverable is code; the maths is its subject, so its evidence counts half.
    result = classify(prompt)
    assert result.route == "code", result
    assert result.runner_up == "reasoning"


def test_a_question_about_languages_is_quick() -> None:
    result = classify("What are the differences between Python code and Java code?")
    assert result.route == "quick", result


def test_close_call_names_the_cheaper_choice() -> None:
    # The rules alone: built to qualify for both, the cheaper one wins and says so.
    clf = Classifier({"reasoning": {"tradeoff": 3.0}, "code": {"tradeoff": 3.5}}, model=None)
    result = clf.classify("Think about the tradeoff here.")
    assert result.route == "reasoning"
    assert any(r.startswith("mixed signals: reasoning chosen over code") for r in result.reasons)


# --------------------------------------------------------------------------- user routes
def test_extra_keywords_define_a_new_route() -> None:
    clf = Classifier({"legal": {"contract": 2.5, "non-disclosure agreement": 3.0}})
    assert "legal" in clf.routes
    result = clf.classify("Please review this non-disclosure agreement for risky clauses.")
    assert result.route == "legal"
    assert "legal" in result.scores
    assert any("non-disclosure agreement" in r for r in result.reasons)


def test_extra_keywords_match_whole_words_only() -> None:
    clf = Classifier({"legal": {"tort": 3.0}})
    assert clf.classify("Bake a chocolate torte for six people.").route == "quick"
    assert clf.classify("Is this a tort under English law?").route == "legal"


def test_extra_keywords_add_to_builtin_routes() -> None:
    prompt = "Help me with my quarterly plan."
    assert classify(prompt).route == "quick"
    result = classify(prompt, extra_keywords={"code": {"quarterly plan": 3.0}})
    assert result.route == "code"
    assert "code: configured keywords (+3.0)" in result.reasons


# --------------------------------------------------------------------------- the result
def test_result_has_confidence_reasons_and_scores() -> None:
    result = classify("Write a function to reverse a linked list in C.")
    assert isinstance(result, Classification)
    assert result.route == "code"
    assert 0.0 < result.confidence <= 1.0
    assert result.reasons and all(isinstance(r, str) and r for r in result.reasons)
    assert set(BUILTIN_ROUTES) <= set(result.scores)
    assert result.runner_up in BUILTIN_ROUTES and result.runner_up != "code"
    assert result.has_image is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.route = "quick"  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.scores["code"] = 0.0  # type: ignore[index]


def test_confidence_is_higher_for_clear_cases() -> None:
    clear = classify(CODE_BY_SHAPE["python traceback"] + "\n" + CODE_BY_SHAPE["dockerfile"])
    close = classify("Explain recursion with a Python example.")
    assert clear.confidence > close.confidence


@pytest.mark.parametrize("prompt", ["", "   ", "\n\n\t"])
def test_empty_prompt_is_quick(prompt: str) -> None:
    result = classify(prompt)
    assert result.route == "quick"
    assert result.runner_up == ""
    assert result.reasons


def test_huge_prompt_is_handled() -> None:
    prose = "The committee met again and discussed the budget for the coming year. " * 20_000
    result = classify(prose + "\nSummarize the discussion above.")
    assert result.route == "quick"
    code = "def step(x):\n    return x + 1\n\n" * 50_000
    assert classify(code).route == "code"


def test_module_function_matches_the_class() -> None:
    prompt = REASONING["word problem"]
    assert classify(prompt) == Classifier().classify(prompt)


def test_baseline_is_the_article_router() -> None:
    assert baseline_route("what's on my screenshot") == "vision"
    assert baseline_route("a yoga class") == "code"  # substring matching, as written
    assert baseline_route("compare these two hotels") == "reasoning"
    assert baseline_route("hello there") == "quick"


@pytest.mark.parametrize("prompt,route", [
    ("How do I reverse a linked list in C++?", "code"),
    ("How can I read a CSV file in Rust?", "code"),
    ("How do you pronounce croissant in French?", "quick"),
    ("A bus leaves at 9:00 going 60 km/h; a car follows at 10:00 going 90 km/h. "
     "When does the car catch up?", "reasoning"),
    ("When does the museum open on Sundays?", "quick"),
])
def test_how_to_in_a_language_and_when_questions(prompt: str, route: str) -> None:
    assert classify(prompt).route == route


# --------------------------------------------------------------------------- cheap stays cheap
@pytest.mark.parametrize(
    "prompt",
    [
        "What is 2+2?",
        "what's 15% of 80?",
        "7 times 8",
        "What is 144 / 12?",
        "Define entropy.",
        "What is a prime number?",
        "Who wrote Dune?",
        "When was the Eiffel Tower built?",
        "What does 'idempotent' mean?",
    ],
)
def test_cheap_questions_stay_quick(prompt: str) -> None:
    result = classify(prompt)
    assert result.route == "quick", result


@pytest.mark.parametrize(
    "prompt",
    [
        "What is the integral of x^2 from 0 to 3?",
        "Solve 3x + 5 = 20 for x.",
        "((12 - 4) * 3 + 18 / 6) - 7 * 2 =",
    ],
)
def test_short_maths_that_is_work_is_not_cheap(prompt: str) -> None:
    assert classify(prompt).route == "reasoning"


# --------------------------------------------------------------------------- the model
def test_the_shipped_model_loads_and_is_small() -> None:
    model = default_model()
    assert model is not None, "run bench/train_classifier.py to build the weights"
    assert set(model.routes) == set(BUILTIN_ROUTES)
    assert 0.2 < model.temperature < 5
    path = Path(__file__).resolve().parents[1] / "src/labrouter/core" / MODEL_RESOURCE
    assert path.stat().st_size < 5_000_000
    data = json.loads(gzip.decompress(path.read_bytes()))
    assert data["meta"]["data"].startswith("train.jsonl")


def test_model_round_trips_through_its_file_form() -> None:
    model = LinearModel(("a", "b"), (0.1, -0.1), {"x": (0.5, -0.25), "~<xy": (0.0, 1.0)}, 1.5)
    again = LinearModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again == model
    feats = text_features("x xy")
    assert again.logits_from(feats) == pytest.approx(model.logits_from(feats))


def test_probabilities_are_a_distribution_and_match_the_confidence() -> None:
    result = classify("Sort this list of numbers in descending order using Python.")
    probs = result.probabilities
    assert set(probs) == set(BUILTIN_ROUTES)
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-3)
    assert result.confidence == pytest.approx(probs[result.route], abs=1e-3)
    assert result.reasons[0].startswith(f"model: {result.route}")


def test_model_features_see_shape_not_just_words() -> None:
    assert tokens("def f(x): return 2 + 23 * 2024") == [
        "def", "f", "(", "x", ")", ":", "return", "0", "+", "00", "*", "000", "0"
    ]
    feats, words = text_features("Fix the bug in my SQL query")
    assert "sql" in feats and "sql query" in feats and "sql" in words


@pytest.mark.parametrize("text", [
    "Fix the bug: x = f(a, b) != None && y->z; // ok?",  # ASCII, marks only: str.split
    "utf8 and x86 and md5sum",  # a letter touching a digit: the regex
    "born in 19845, not 1984",  # a run of more than three digits: the regex
    "naïve café, 3 € and ½ cup",  # not ASCII: the regex
    "a\x1cb\x0bc\x00d\x7fe",  # control characters: white space or marks as \\s says
    "",
])
def test_model_tokens_are_the_same_on_both_paths(text: str) -> None:
    # tokens() splits ASCII text with str.split where it can; the regex defines the words
    from labrouter.core.classify_model import _DIGITS, _TOKEN

    assert tokens(text) == _TOKEN.findall(text.lower().translate(_DIGITS))


@pytest.mark.parametrize("text", [
    "Write it in Python, then port it into Kotlin Python and to C++ or C#.",
    "using Kotlin Kotlin Python; within  Rust; into\tGolang; from Gopher; to R.",
    "Implement a queue in rust (not trust) with bash, into LaTeX, from  \n Java",
    "in C major, to C, fromJava, toGo, in Go",
])
def test_fast_request_search_finds_what_the_regex_finds(text: str) -> None:
    # _in_lang_matches and _word_matches_at search from literals instead of scanning with
    # the regex: they must find the same matches, in the same order
    from labrouter.core import classify as c

    def spans(ms: list[re.Match[str]]) -> list[tuple[tuple[int, int], str]]:
        return [(m.span(), m.group(0)) for m in ms]

    assert spans(c._in_lang_matches(text)) == spans(list(c._IN_LANG.finditer(text)))
    low = text.lower() + " rewrite the function to fix my code; write a script that ports it"
    for pat in (c._FUNCTION_REQUEST, c._CLASS_REQUEST, c._PROGRAM_REQUEST):
        for limit in (1, 20):
            assert spans(c._word_matches_at(pat, low, c._CODE_VERB_STARTS, limit)) == spans(
                c._word_matches(pat, low, limit)
            )


_FS_OBJECTS = (
    "file", "files", "directory", "directories", "folder", "file system", "filesystem",
    "filenames", "symlinks", "symbolic link", "permissions", "processes", "pid", "inodes",
    "disk usage", "disk space", "subdirectories", "current user", "username", "user name",
    "hostname", "host name", "environment variables", "ip addresses", "network interfaces",
    "open ports", "memory usage", "cpu usage", "kernel version", "uptime", "partitions",
    "checksums", "md5sum", "md5 sums", "tarballs", "zip files", "archives",
)


@pytest.mark.parametrize("obj", _FS_OBJECTS)
def test_file_task_search_is_the_plain_search(obj: str) -> None:
    # _fs_task_search looks only where one of _FS_OBJECT_HINTS is: every object _FS_TASK
    # names must contain one (add the object here when you add it to _FS_TASK)
    from labrouter.core import classify as c

    for text in (
        f"please list the {obj} here",
        f"users? hosts! show me every {obj} in /tmp\nthen sort it",
        f"a re-run of it: rerun the {obj}. count.the {obj}",
        f"nothing to do with {obj}",
    ):
        fast, plain = c._fs_task_search(text), c._word_search(c._FS_TASK, text)
        assert (fast and fast.span()) == (plain and plain.span()), text


def test_huge_prompt_features_are_bounded() -> None:
    feats, _ = text_features("word " * 100_000)
    assert sum(feats.values()) < 2_000


def test_rules_alone_still_work() -> None:
    clf = Classifier(model=None)
    assert clf.model is None
    result = clf.classify(CODE_BY_SHAPE["python traceback"])
    assert result.route == "code" and result.probabilities == {}
