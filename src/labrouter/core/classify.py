"""The prompt classifier: which route (quick, code, reasoning, vision, or a user-defined one)
should answer a prompt, how sure we are, and why.

Owns: `Classification`, `ContextHint`, `Classifier` and the module-level `classify()`: the
rules (shape and word evidence, below) and the decision that combines them with the learned
model of `classify_model.py`. The article's keyword router lives in `bench/baseline.py`.

Must not import anything but the standard library (a test enforces it): it runs on every
hotkey press, in the daemon and in `labrouter route`, and is tested with no network.

How it decides
--------------
Each route collects *evidence*: weighted features, each with a human-readable reason.
Features look at the shape of the text, not just at words:

- code: fences, `def`/`fn`/`func`/`=>`, braces and semicolons, indented blocks, tracebacks
  and compiler errors, SQL, shell command lines, Dockerfile/YAML/INI, diffs and merge
  conflicts, and requests such as "write a function to ..." or "find all files modified
  in the last hour" (a shell task in words);
- reasoning: quantities followed by a question (word problems), equations, probability,
  proofs, logic puzzles, multiple-choice options, boolean and arithmetic expressions,
  constraint planning;
- vision: an attached image, or a request about "this screenshot / the chart above";
- quick: a prior of `QUICK_PRIOR`, plus cues of rewriting, summarising, extracting from a
  passage, or asking what an error message means.

Words count only as whole words and in their programming or mathematical sense
("a yoga class", "a social function", "the big picture", "brand image", "a python in the
garden" and "compare these two hotels" add nothing).

Deciding follows the article's "confidence scoring": a route other than quick needs at
least `THRESHOLD` evidence and more than quick has; when two routes qualify, the cheaper
one wins unless the dearer one leads by `STRONG_MARGIN`. The cost order is
quick (0) < vision (1) < reasoning (2) < code (3): the lab's vision models are small,
reasoning models think at length, and code goes to the largest model. User-defined routes
cost 1: the user named them, so on a tie they beat the built-in expensive routes.
An attached image always routes to vision, since only a vision model can see it.

Speed
-----
A 10 KB prompt must classify in well under a millisecond. Python's `re` is fast only when a
pattern starts with a literal, so line patterns are written against "\\n" + text instead of
`^` (with possessive leading blanks, `[ \\t]*+`, so that indented lines are not retried),
word patterns start with their words (the left word boundary is checked in Python), and
most patterns run only when a cheap test says they can match: a token in the prompt's word
set, a character of the pattern (a one-character `in` is a memchr), the first character of
some line (`_LINE_HEAD`, one scan for all the line patterns), a literal the match must
contain. A pattern led by an alternation of common words is not scanned for but tried only
where one of its leading literals (found with str.find) begins a word
(`_word_matches_at`, `_in_lang_matches`). Each such shortcut gives the same matches as
the plain scan; the comments next to them say why. Requests are looked for in the head and
tail of a long prompt (`REGION_HEAD`, `REGION_TAIL`), where instructions are; shapes are
looked for in all of it, up to `MAX_ANALYSED` characters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from types import MappingProxyType

from .classify_data import (
    ARITHMETIC_WORDS,
    CLASS_NONCODE_WORDS,
    CODE_NOUNS,
    CODE_TERMS_COMMON,
    CODE_TERMS_STRONG,
    DEFAULT_APP_ROUTES,
    FS_OBJECTS,
    FUNCTION_EVENT_WORDS,
    LANGUAGES,
    LOGIC_TERMS,
    MATH_TERMS,
    NONCODE_AFTER,
    NONCODE_BEFORE,
    NUMBER_WORDS,
    QUICK_OBJECTS,
    QUICK_VERBS,
    SHELL_COMMANDS,
    SNAKE_WORDS,
    TOOL_WORDS,
    word_set,
)
from .classify_model import LinearModel, default_model, rule_features, text_features

QUICK, CODE, REASONING, VISION = "quick", "code", "reasoning", "vision"
BUILTIN_ROUTES: tuple[str, ...] = (QUICK, CODE, REASONING, VISION)

# Relative cost of a route: on mixed signals the cheaper one wins (see module docstring).
COST: Mapping[str, int] = MappingProxyType({QUICK: 0, VISION: 1, REASONING: 2, CODE: 3})
USER_ROUTE_COST = 1

QUICK_PRIOR = 1.0  # quick is the default: most real traffic is quick (72% in the article)
THRESHOLD = 2.0  # evidence a non-quick route needs before it can be chosen
STRONG_MARGIN = 1.5  # lead a dearer route needs over a cheaper qualifying one
IMAGE_WEIGHT = 10.0  # an attached image decides: nothing else can read it
TEMPERATURE = 1.2  # softmax temperature turning rule evidence into a confidence (no model)
# The focused application as a prior: log-odds added to the route it leans to. Enough to
# tip a close call (0.45 against 0.55 becomes 0.57 against 0.43), never a clear one. The data
# has no application context to learn it from, so it is set, not trained.
APP_PRIOR = 0.5
APP_EVIDENCE = 0.75  # the same prior for the rules alone, in evidence points
# Confidence given to the cheap-question rule's quick (its precision on the data, rounded
# down): a rule, not the model, decided.
CHEAP_CONFIDENCE = 0.9
FEW_WORDS = 3  # a prompt this short needs a rule's evidence for a route other than quick

# Prompts beyond MAX_ANALYSED are classified on their head and tail: what a request is
# shows at its start or end, and this keeps a pasted megabyte fast.
MAX_ANALYSED = 48_000
TAIL_ANALYSED = 8_000
# Where requests in words ("write a function", "how many ...?") are looked for.
REGION_HEAD = 2_500
REGION_TAIL = 1_500
INSTRUCTION_CHARS = 400
# Word problems and puzzles are short; a long text with numbers and a question is a
# reading-comprehension question (quick), not arithmetic.
MAX_PROBLEM_WORDS = 400

# Punctuation that separates words; "+", "#", "-" and "_" stay inside tokens (c++, c#).
_WORD_SPLIT = str.maketrans({c: " " for c in "\t\n\r.,;:!?()[]{}<>\"'`*=/\\|~^@$%&"})

# --------------------------------------------------------------------------- code shape
# Line patterns run over "\n" + text: a literal first character keeps `re` fast. Their
# leading blanks are possessive (`[ \t]*+`, never given back: what follows them is never a
# blank, so the matches are the same), which spares `re` retrying every indented line.
_FENCE = re.compile(r"\n[ \t]*+```[ \t]*([\w+#.-]*)")
_PY_DEF = re.compile(r"def[ \t]+\w+[ \t]*\(")
_CLASS_DEF = re.compile(
    r"\n[ \t]*+(?:(?:public|private|abstract|final|export|data|sealed|static)[ \t]+)*"
    r"class[ \t]+[A-Za-z_]\w*[^\n]*[:{][ \t]*(?=\n|$)"
)
_IMPORT = re.compile(
    r"\n[ \t]*+(?:import[ \t]+[\w.]+(?:[ \t]+as[ \t]+\w+)?[ \t]*;?[ \t]*(?=\n|$)|from[ \t]+"
    r"[\w.]+[ \t]+import[ \t]+\S|#include[ \t]*[<\"]|using[ \t]+(?:namespace[ \t]+)?[\w.]+;|"
    r"package[ \t]+[\w.]+;|(?:const|let|var)[ \t]+\w+[ \t]*=[ \t]*require\(|use[ \t]+[\w:]+;)"
)
# _IMPORT's keyword stands between blanks and a blank, "<", '"' or "(": it is a token.
_IMPORT_WORDS = frozenset(("import", "from", "#include", "using", "package", "require", "use"))
_JS_FUNC = re.compile(r"function\b[ \t]*[\w$]*[ \t]*\([^()\n]*\)\s*\{")
_ARROW = re.compile(r"=>[ \t]*[{(\w\"'\[]")
_FN = re.compile(r"fn[ \t]+\w+[ \t]*[<(]|func[ \t]+(?:\(\w+[ \t]+\*?\w+\)[ \t]*)?\w+\(")
_C_DECL = re.compile(
    r"\n[ \t]*+(?:(?:public|private|protected|static|final|const|inline|virtual|extern)[ \t]+)*"
    r"(?:void|int|char|float|double|bool|boolean|long|short|unsigned|String|auto|size_t)"
    r"\b[\w \t*&<>\[\],]*?\b\w+[ \t]*\([^;\n]*\)[ \t]*(?:const[ \t]*)?\{?[ \t]*(?=\n|$)"
)
# _C_DECL's type word stands between blanks and a blank, "*", "&", "<", ">", "[", "]" or ",",
# all word separators: it is one of the prompt's tokens whenever _C_DECL can match.
_C_TYPES = word_set("void int char float double bool boolean long short unsigned string auto")
_C_TYPES |= {"size_t"}
_DECL = re.compile(
    r"\n[ \t]*+(?:(?:let|const|var)[ \t]+(?:mut[ \t]+)?[A-Za-z_$][\w$]*[ \t]*(?::[^=\n]+)?="
    r"|(?:for|while|if|switch)[ \t]*\(|for[ \t]+\w+(?:[ \t]*,[ \t]*\w+)*[ \t]+in[ \t]+\S+:"
    r"|(?:elif|else|try|finally)\b[^\n]*:[ \t]*(?=\n|$)|except\b[^\n]*:[ \t]*(?=\n|$)"
    r"|return\b[^\n]*|print\(|console\.log\(|System\.out\.|printf\(|fmt\.Print"
    r"|[a-z_][\w.]+(?:\[[^\]\n]*\])?[ \t]*(?:[-+*/]?=|:=)[ \t]*[\w\[({\"'-][^\n]*(?=\n|$))"
)
_SEMI_END = re.compile(r";(?<=[\w)\]'\"];)[ \t]*(?=\n|$)")
_BRACE_CLOSE = re.compile(r"\n[ \t]*+[}\]]\)?;?[ \t]*(?=\n|$)")
# (a character the pattern needs, pattern): a one-character `in` is a memchr, far faster
# than a scan, so the scan runs only where the pattern can match.
_BRACE_OPEN = (
    ("{", re.compile(r"\{[ \t]*\n")), ("[", re.compile(r"\[[ \t]*\n")),
    ("(", re.compile(r"\([ \t]*\n")),
)
_INDENT_BLOCK = (
    (":", re.compile(r":[ \t]*\n(?:\t| {2,})\S")), ("{", re.compile(r"\{[ \t]*\n(?:\t| {2,})\S")),
)
# "++" also occurs in "C++"; those are subtracted where the operators are counted.
# One literal pattern each: `re` scans for a literal far faster than for an alternation.
# Each comes with two characters it needs: a one-character `in` is a memchr, far faster
# than a scan, so the scan runs only where the operator can be.
_OPERATORS: tuple[tuple[str, re.Pattern[str]], ...] = (
    *((op, re.compile(re.escape(op)))
      for op in ("==", "!=", "+=", "-=", "&&", "||", "::", "->", "++")),
    ("){", re.compile(r"\)\s*\{")),
    ("[]", re.compile(r"\[(?<=[a-z_]\[)[a-z_][\w.]*\]")),
)
_CALLS = (
    (".", re.compile(r"\.(?<=[a-z_\d)]\.)[A-Za-z_]\w*\(")),
    ("_", re.compile(r"_(?<=[a-z]_)[a-z]\w*\(")),
)
# The first character of a line after its blanks, for the characters the line patterns
# below start with: one scan over the lines instead of one per pattern (each costs about
# as much as this one on a long prompt, whether it matches or not).
_LINE_HEAD = re.compile(r"\n[ \t]*+([}\]/*#>I\[\"$+@-])")
_REPL = re.compile(r"\n[ \t]*+(?:>>>|In \[\d+\]:)[ \t]")
_LINE_COMMENT = re.compile(r"\n[ \t]*+(?://|/\*|\*/|#[ \t]?[a-z])")
# Stack traces and compiler errors: (token that must be in the prompt, pattern) pairs; a
# token test is a set lookup, so a pattern runs only on text that can contain it.
_TRACEBACK: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (gate, re.compile(pattern))
    for gate, pattern in (
        ("traceback", r"Traceback \(most recent call last\)"),
        ("file", r"\n[ \t]*+File \"[^\"\n]+\", line \d+"),
        ("at", r"\n[ \t]*+at [\w$.<>]+\([\w$.]+:\d+\)|\n[ \t]*+at [^\n(]+\([^\n)]+:\d+:\d+\)"),
        ("panicked", r"panicked at"),
        ("goroutine", r"\ngoroutine \d+ \["),
        ("segmentation", r"Segmentation fault"),
        ("dumped", r"core dumped"),
        ("caused", r"\nCaused by: [\w.]+"),
    )
)
_COMPILER: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (gate, re.compile(pattern))
    for gate, pattern in (
        ("error", r"\n[\w./\\-]+\.\w+:\d+(?::\d+)?: (?:fatal )?error\b"),
        ("warning", r"\n[\w./\\-]+\.\w+:\d+(?::\d+)?: warning\b"),
        ("error", r"\nerror(?:\[E\d+\])?: "),
        ("error", r"\n[ \t]*+--> \S+:\d+:\d+"),
        ("error", r"error (?:TS|CS|C)\d{3,5}\b"),
        ("reference", r"undefined reference to"),
        ("err", r"npm ERR!"),
        ("symbol", r"cannot find symbol"),
        ("expected", r"expected ';'"),
        ("matching", r"no matching function for call"),
        ("", r"rror: (?<=[a-z]Error: )"),
        ("", r"xception: (?<=[a-z]Exception: )"),
    )
)
_SQL_UPPER = re.compile(
    r"SELECT\b[\s\S]{1,300}?\bFROM\b|INSERT\s+INTO\b|CREATE\s+(?:TABLE|INDEX|VIEW)\b|"
    r"UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|ALTER\s+TABLE\b|(?:INNER|LEFT|RIGHT|OUTER)\s+"
    r"JOIN\b|GROUP\s+BY\b|ORDER\s+BY\b"
)
_SQL_LOWER = re.compile(
    r"select\s+(?:\*|distinct\s+\w+|\w+(?:\s*,\s*\w+)+)\s+from\s+\w+|primary\s+key\b|"
    r"foreign\s+key\b|varchar\b|insert\s+into\s+\w+\s*\(|create\s+table\s+\w+"
)
_SQL_UPPER_WORDS = ("SELECT", "INSERT", "CREATE", "UPDATE", "DELETE", "ALTER", "JOIN", " BY")
_SQL_TRIGGERS = word_set(
    """
    select insert create update delete alter join group order primary foreign varchar
    """
)
# A line that starts with a lower-case word: the word is looked up in SHELL_COMMANDS in
# Python, which is faster than an alternation of a hundred commands at every line.
_SHELL_LINE = re.compile(r"\n[ \t]*+(?:\$[ \t]+|sudo[ \t]+)*([a-z][\w.+-]*)[ \t]+([^\n]*)")
# What makes the rest of a line look like shell arguments rather than English.
_SHELL_ARGS = re.compile(
    r"(?:^|[ \t])-{1,2}[\w-]+|\|[ \t]*\w|>{1,2}[ \t]*\S|\$\{?\w+|(?:^|[ \t])[~.]?/[\w.-]+|"
    r"\*\.\w+|&&"
)
_PROMPT_LINE = re.compile(r"\n[ \t]*+\$[ \t]+[a-z]|\n[\w.-]+@[\w.-]+:[^\n]{0,40}[$#][ \t]+[a-z]")
_INLINE_CODE = re.compile(r"`[^`\n]*(?:[(){}\[\];=<>|/$.\\]|--?\w)[^`\n]*`")
_DOCKERFILE = re.compile(
    r"\n(?:FROM[ \t]+[\w./:@-]+(?:[ \t]+AS[ \t]+\w+)?[ \t]*(?=\n|$)|RUN[ \t]+\S|COPY[ \t]+\S|"
    r"ADD[ \t]+\S|CMD[ \t]*\[|ENTRYPOINT[ \t]*\[|WORKDIR[ \t]+/|EXPOSE[ \t]+\d|ENV[ \t]+\w+[ =])"
)
# Indented by spaces or by a tab: two patterns, so that each starts with a literal ("\n  ",
# "\n\t") and `re` enters only the indented lines (no line matches both); possessive where
# what follows cannot be what was given back (a blank, "- ", a word character before ":").
_YAML_NESTED = (
    re.compile(r"\n  ++(?:- )?+[a-z_][\w.-]*+:(?:[ \t]+[^\s#][^\n]{0,80})?(?=\n|$)"),
    re.compile(r"\n\t(?:- )?+[a-z_][\w.-]*+:(?:[ \t]+[^\s#][^\n]{0,80})?(?=\n|$)"),
)
_YAML_TOP = re.compile(r"\n[a-z_][\w.-]*:[ \t]*(?=\n|$)")
_INI_SECTION = re.compile(r"\n\[[\w.\-\" ]+\][ \t]*(?=\n|$)")
_INI_KEY = re.compile(r"\n[\w.-]+[ \t]*=[ \t]*\S")
_JSON_KEY = re.compile(r"\n[ \t]*+\"[\w.-]+\"[ \t]*:[ \t]*[\[{\"\d tfn]")
# `'":' in text`: `re` scans for a literal faster than `in` does for a two-character one
_JSON_GATE = re.compile('":')
_DIFF = re.compile(
    r"\n(?:diff --git |index [0-9a-f]{6,}\.\.|@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@|"
    r"\+\+\+ [ab/]|--- [ab/])"
)
_DIFF_PLUS = re.compile(r"\n\+(?!\+)[ \t]*\S")
_CONFLICT = re.compile(r"\n(?:<{7}(?: |\n)|={7}\n|>{7}(?: |\n|$))")
_HTML = re.compile(
    r"<(?i:/?(?:div|span|html|body|head|script|style|p|a|ul|ol|li|table|tr|td|th|img|input|"
    r"form|button|template|section|nav|header|footer|h[1-6]|meta|link|label|select|option)"
    r")\b[^>\n]*>"
)
# A /regex/ literal: slashes around a short run with at least two regex metacharacters
# (checked in Python; a nested quantifier here would backtrack exponentially).
_REGEX_LITERAL = re.compile(r"/([^/\s]{3,120})/")
_REGEX_META = re.compile(r"\\[dwsbDWS]|\[[^\]]+\]|[+*?]")
_FENCE_LANGS = word_set(
    "py python js ts rs go rb java kt sh shell console terminal diff yml yaml ini cfg conf "
    "dockerfile c h cs cpp hpp swift sql json toml xml html"
)

# --------------------------------------------------------------------------- code requests
# These run on the lower-cased request region and start with their verbs (fast); the left
# word boundary is checked by `_starts_word`.
_CODE_VERBS = (
    r"(?:write|writing|implement|implementing|create|develop|build|generate|define|"
    r"complete|fix|debug|refactor|optimi[sz]e|rewrite|convert|port|modify|provide|design)"
)
# "Write a (python) function to ...": the unmistakable programming request.
_FUNCTION_REQUEST = re.compile(
    _CODE_VERBS + r"\s+(?:me\s+)?(?:a|an|the|this|that|some|my)?\s*((?:[\w+#-]+\s+){0,2}?)"
    r"(?:function|method|procedure|subroutine|lambda)s?\b\s*(?:that|which|to|named|called|"
    r"in|for|taking|takes|returning|returns|`|\w+\(|using|so|with|accepting|f\b)"
)
_CODE_VERB_WORD = re.compile(r"\b" + _CODE_VERBS + r"\b")


def _literal_starts(alternation: str) -> tuple[str, ...]:
    """The literals the alternatives of "(?:a|b|...)" begin with (each up to its first
    special character), without those that begin with another: every match of a pattern led
    by the alternation begins with one of them."""
    heads = set()
    for alt in alternation.removeprefix("(?:").removesuffix(")").split("|"):
        head, *special = re.split(r"([][(){}?*+|\\.^$])", alt, maxsplit=1)
        if special and special[0] in "?*+{":
            head = head[:-1]  # a quantifier makes the last character optional
        heads.add(head)
    if not all(heads):
        raise ValueError(f"an alternative does not begin with a literal: {alternation}")
    return tuple(sorted(h for h in heads if not any(h != o and h.startswith(o) for o in heads)))


# Where the requests below can begin (`_word_matches_at`)
_CODE_VERB_STARTS = _literal_starts(_CODE_VERBS)
_FUNCTION_WORDS = word_set("function functions method methods procedure subroutine lambda")
_CLASS_REQUEST = re.compile(
    _CODE_VERBS + r"\s+(?:a|an|the)?\s*((?:[\w+#-]+\s+){0,2}?)class(?:es)?\s+(?:that|which|"
    r"to|named|called|for|with|representing|in|`)"
)
_PROGRAM_REQUEST = re.compile(
    _CODE_VERBS + r"\s+(?:me\s+)?(?:a|an|the|this|that|some|my|our)?\s*((?:[\w+#-]+\s+){0,2}?)"
    r"(program|script|code|snippet|algorithm|regex|regular expression|unit tests?|"
    r"test cases|shell command|bash command|sql query|database query|api|endpoint|"
    r"command[- ]line tool|makefile|dockerfile|docstring|module|implementation|compiler|"
    r"parser|web ?app|website|web page|plugin|macro|query)\b\s*(\w*)\s*(\w*)"
)
_PROGRAM_WORDS = word_set(
    """
    program programs script scripts code snippet algorithm regex regular unit test tests
    shell bash sql database api endpoint command makefile dockerfile docstring module
    implementation compiler parser webapp website web plugin macro query
    """
)
_CODE_GIVEN = re.compile(
    r"(?:the|this|following|given|my|above|below)\s+(?:\w+\s+)?(code|snippet|program|script|"
    r"function|implementation|regex|stack trace|traceback|commit|pull request|diff|patch|"
    r"dockerfile|makefile|config file|source file|source code)\b"
)
_AMBIGUOUS_LANGS = word_set(
    """
    python java go golang rust ruby swift c c++ c# r julia kotlin scala dart
    """
)
# "<language> <noun>": one literal-led pattern per language, run only when it is named.
_LANG_NEXT_WORD: dict[str, re.Pattern[str]] = {
    lang: re.compile(re.escape(lang) + r"\s+(\w+)")
    for lang in word_set(
        """
        python java javascript typescript c++ c# golang go rust ruby php swift kotlin
        scala haskell perl lua julia sql bash shell powershell latex html css matlab c r
        """
    )
}
_NOT_A_LANGUAGE_AFTER = re.compile(r"\s*(?:major|minor|sharp|flat|#|°|degrees)", re.IGNORECASE)
_IN_LANG_WORDS = ("in", "using", "with", "into", "to", "from")
_IN_LANG_NAMES = (
    "Python", "Java", "JavaScript", "TypeScript", "C++", "C#", "C", "Go", "Golang", "Rust",
    "Ruby", "PHP", "Swift", "Kotlin", "Scala", "Haskell", "Perl", "Lua", "R", "Julia", "SQL",
    "Bash", "PowerShell", "LaTeX", "python", "javascript", "typescript", "golang", "rust",
    "kotlin", "bash",
)
_IN_LANG = re.compile(
    "(?:" + "|".join(_IN_LANG_WORDS) + r")\s+("
    + "|".join(re.escape(n) for n in _IN_LANG_NAMES) + r")\b"
)
# Where one of its names can begin: str.find of each, without those that begin with another
# ("C" finds "C++"), and only where its first letter is in the text at all (a memchr; most
# capitals are not).
_IN_LANG_STARTS = tuple(
    n for n in sorted(set(_IN_LANG_NAMES))
    if not any(n != o and n.startswith(o) for o in _IN_LANG_NAMES)
)
# A coding problem in the LeetCode style: "Given an array of integers nums ..., return ...".
_CODING_PROBLEM = re.compile(
    r"(?:given|you are given|you're given)\s+(?:an?|two|the|some)\s+(?:[\w-]+\s+){0,2}?"
    r"(?:array|string|list|linked list|binary tree|tree|integer|matrix|grid|graph|dictionary|"
    r"hash ?map|sequence of integers)s?\b[\s\S]{0,300}?\breturn"
)
# A command then a blank: `c + " " in nl or c + "\t" in nl`, faster (one literal-led scan).
_SHELL_WORD: dict[str, re.Pattern[str]] = {
    cmd: re.compile(re.escape(cmd) + r"[ \t]") for cmd in SHELL_COMMANDS
}
# A shell command with a flag anywhere in the text ("what does awk -F, '...' do?").
_SHELL_FLAG: dict[str, re.Pattern[str]] = {
    cmd: re.compile(re.escape(cmd) + r" +-{1,2}[A-Za-z]") for cmd in SHELL_COMMANDS
}
# A shell task in words (NL2Bash style): a file-system verb and a file-system object.
_FS_TASK = re.compile(
    r"(?:find|list|delete|remove|copy|move|rename|search|print|display|show|count|compress|"
    r"archive|extract|change|set|create|make|get|locate|mount|unmount|kill|download|sort|"
    r"replace|split|merge|concatenate|append|check|calculate|save|monitor|run|execute|"
    r"report|output|recursively|change)(?:es|s|ing)?\b(?:[^.?!\n]|\.(?=\w)){0,80}?\b(?:files?|"
    r"director(?:y|ies)|folders?|file ?system|filenames?|symlinks?|symbolic links?|"
    r"permissions?|processes|pid|inodes?|disk (?:usage|space)|subdirector(?:y|ies)|"
    r"current user|user ?name|host ?name|environment variables?|ip address(?:es)?|"
    r"network interfaces?|open ports|memory usage|cpu usage|kernel version|uptime|"
    r"partitions?|checksums?|md5 ?sums?|tarballs?|zip files?|archives?)\b"
)
# A substring of every object _FS_TASK names.
_FS_OBJECT_HINTS = (
    "file", "director", "folder", "symlink", "symbolic link", "permission", "processes",
    "pid", "inode", "disk usage", "disk space", "current user", "username", "user name",
    "hostname", "host name", "environment variable", "ip address", "network interface",
    "open ports", "memory usage", "cpu usage", "kernel version", "uptime", "partition",
    "checksum", "md5", "tarball", "archive",
)
_FS_TRIGGERS = FS_OBJECTS | word_set(
    """
    user username hostname host environment ip network ports memory cpu kernel uptime
    partition partitions checksum checksums md5 md5sum tarball tarballs archive archives
    zip disk
    """
)
_FS_QUALIFIER = re.compile(
    r"modified|accessed|recursively|current directory|working directory|home directory|"
    r"directory tree|file system|owned by|larger than|smaller than|"
    r"bigger than|named|extension|executable|hidden|regular files|empty|symlink|"
    r"permission|absolute path|host ?name|"
    r"environment|/\w|\w\.\w{1,4}\b|\*\.\w+|days? (?:ago|back|old)|"
    r"last \d+ (?:minutes|hours|days)|(?:all|every|each) (?:the )?(?:\w+ )?(?:files?|folders?|"
    r"director)|this (?:folder|directory)|\.\w{1,4} files?|"
    r"\d\d\d\b"
)
# "What does this error mean": the policy routes it to quick unless there is code to fix.
_ERROR_QUESTION = re.compile(
    r"what (?:does|do|is|are)\b[^.?!\n]{0,60}?\b(?:error|errors|exception|warning|message|"
    r"status|code)\b[^.?!\n]{0,40}?\b(?:mean|means|meaning)\b|meaning of\b[^.?!\n]{0,30}"
    r"\b(?:error|exception|warning)\b"
)
# A question *about* a subject rather than a task in it.
_ABOUT_QUESTION = re.compile(
    r"differences?|compare|comparison|versus|vs\.? |pros and cons|advantages|"
    r"disadvantages|which is better|history of"
)
# Reading comprehension: the answer is in a passage that comes with the prompt.
_PASSAGE_TASK = re.compile(
    r"(?:the |this |following |given |provided |above |below )(?:passage|paragraph|article|"
    r"text|abstract|excerpt|story|email|review|reference text|document)\b|"
    r"(?:based on|according to|from|given|using) (?:this|the|these) (?:passage|paragraph|"
    r"article|text|facts|information|reference)"
)
# Every match of _PASSAGE_TASK ends in one of these: without one, it cannot match.
_PASSAGE_NOUNS = (
    "passage", "paragraph", "article", "text", "abstract", "excerpt", "story", "email",
    "review", "document", "facts", "information", "reference",
)

# --------------------------------------------------------------------------- reasoning
_NUMBER = re.compile(r"[$€£]?\d[\d,.]*(?:%|st|nd|rd|th|am|pm)?")
_YEAR = re.compile(r"(?:1[5-9]\d\d|20\d\d)\.?$")
_OPTIONS_HEAD = re.compile(r"\n[ \t]*+(?:options|choices|answer choices)[ \t]*:?[ \t]*(?=\n)")
_OPTION_LINE = re.compile(r"\n[ \t]*+(?:\([A-Ja-j]\)|[A-J][.)])[ \t]+\S")
_OPTION_GATES = (re.compile(r"A[.)]"), re.compile(r"\([Aa]\)"))
_YESNO_OPTION = re.compile(r"\n[ \t]*+-[ \t]*(?:yes|no|true|false|valid|invalid)[ \t]*(?=\n|$)")
_BOOL_EXPR = re.compile(
    r"(?:True|False)[ \t]*\)?(?:[ \t]+(?:and|or)[ \t]+(?:not[ \t]+)*\(?[ \t]*"
    r"(?:True|False)[ \t]*\)?){2,}"
)
_ARITH_PAREN = re.compile(r"\([ \t]*-?\d+(?:\.\d+)?[ \t]*[-+*/×÷^][ \t]*-?\d")
_ARITH_CHAIN = re.compile(
    r"\d[ \t]+[-+*/×÷^][ \t]+\(?-?\d+(?:\.\d+)?\)?[ \t]+[-+*/×÷^][ \t]+\(?-?\d"
)
_ARITH_WORDS = re.compile(
    r"what is -?\d+(?:\.\d+)?\s*(?:[-+*/×÷^]|plus|minus|times|divided by|multiplied by)\s*-?\d"
)
_EQ_POWER = re.compile(r"\^(?<=[a-z0-9)]\^)[ \t]*[\d(a-z]")
_EQ_IMPLICIT = re.compile(r"\d[a-z][ \t]*(?:[-+=*/)]|\^)|[-+=][ \t]*\d+[a-z]\b")
_EQ_FUNC = re.compile(r"\([a-z0-9]\)[ \t]*=|\([a-z], ?[a-z]\)[ \t]*=")
_EQ_SYMBOL = re.compile(r"[∫√∑∏≤≥≠∞∈∀∃²³]|solve for|d/d[a-z]\b|lim_")
_EQ_COMPARE = re.compile(r"[=<>][ \t]*-?\d")
_VARIABLE_BEFORE = re.compile(r".?\b[a-z] ?")
# "x + 5", "|x-1|": a one-letter variable in arithmetic.
_EQ_VAR_OP = re.compile(r"[-+*/](?<=\W[a-z] [-+*/]) ?\(?\d|[-+*/](?<=\W[a-z][-+*/])\(?\d")
_MATH_REQUEST = re.compile(
    r"(?:solve|calculate|compute|evaluate|simplify|find|determine|derive|factor|factorize|"
    r"expand|differentiate|integrate|estimate|work out|figure out)\b[^.?!\n]{0,40}?\b"
    r"(?:the\s+)?(?:equation|equations|expression|value of|integral|derivative|sum of|"
    r"product of|probability|roots?|area|perimeter|volume|limit|remainder|gcd|lcm|"
    r"solutions?|inequality|x|y|n|minimum|maximum|number of ways|expected value|average|"
    r"total|distance|speed|time it takes|percentage|ratio)\b"
)
_MATH_VERBS = word_set(
    """
    solve calculate compute evaluate simplify find determine derive factor factorize expand
    differentiate integrate estimate work figure
    """
)
# "the integral of x^2 from 0 to 3", "derivative of sin(x)/x": calculus applied to an
# expression (a variable, a number, a power or a function name follows) is maths work,
# however short the question; "the integral of his work" has no expression.
_CALCULUS_OF = re.compile(
    r"(?:integral|derivative|antiderivative)s?\s+of\s+(?:the\s+function\s+)?"
    r"(?:[a-z]\b|\d|\(|sin|cos|tan|log|ln|exp|sqrt|e\^|[a-z]\^|\|)"
)
_CALCULUS_WORDS = word_set("integral integrals derivative derivatives antiderivative")
_PROOF = re.compile(
    r"(?:prove|proof|disprove|show that|demonstrate that|verify that|it follows that)\b|"
    r"for (?:all|every|any) (?:integers?|real|natural|positive|n\b|x\b|k\b)|q\.e\.d"
)
_PROOF_WORDS = word_set(
    """
    prove proves proof disprove show demonstrate verify follows all every any q
    """
)
_PROBABILITY = re.compile(
    r"probabilit(?:y|ies)|odds\b|chances? (?:of|that)\b|expected value|at random|"
    r"randomly (?:chosen|selected|picked|drawn)|(?:roll|rolls|rolling|toss|tosses|flip|"
    r"flips)\b[^.?!\n]{0,30}\b(?:dice|die|coins?)\b|how many ways"
)
_PROBABILITY_WORDS = word_set(
    "probability probabilities odds chance chances expected random randomly roll rolls toss "
    "tosses flip flips ways"
)
_LOGIC = re.compile(
    r"tells? the truth|lies\b|liars?\b|knights? and knaves?|to the (?:left|right) of|"
    r"(?:second|third|fourth|first|last) from the (?:left|right)|(?:true|false),? (?:or|and) "
    r"(?:false|uncertain|unknown)|if and only if|logically (?:consistent|follows|valid)|"
    r"deductively valid|premises?\b|(?:taller|shorter|older|younger|heavier|lighter|faster|"
    r"slower) than|riddle|puzzle|sudoku|"
    r"turn (?:left|right|around)|take \d+ steps?|starting point|fixed order|swap(?:s|ped)?\b|"
    r"complete the (?:rest of the )?sequence|closed properly|which (?:sentence|statement) is"
)
_LOGIC_TRIGGERS = word_set(
    """
    tells tell truth lies liar liars knights knaves left right true false if logically
    deductively premise premises taller shorter older younger heavier lighter faster slower
    riddle puzzle sudoku turn take starting fixed swap swaps swapped plausible valid
    complete closed which
    """
)
# "Is the following sentence plausible?", "is the argument deductively valid or invalid?"
_JUDGEMENT = re.compile(
    r"(?:sentence|statement|argument|claim|conclusion|inference)s?,?(?: [\w,]+){0,8} "
    r"(?:plausible|(?:deductively |logically )?valid or invalid|true or false)\b"
)
# One literal-led pattern per alternative (any one matching is a match): `re` scans for a
# literal far faster than it tries an alternation at every position.
_STEP_BY_STEP = (
    re.compile(r"step[- ]by[- ]step\b[^.?!\n]{0,60}\breason"),
    re.compile(r"reasoning\b[^.?!\n]{0,60}\bstep[- ]by[- ]step"),
    re.compile(r"explain your (?:reasoning|work|answer)"),
    re.compile(r"show your (?:reasoning|work|answer)"),
    re.compile(r"think (?:carefully|step)"),
    re.compile(r"justify your answer"),
)
# Literal-led alternatives, tested for truth with any() (as _STEP_BY_STEP).
_ESTIMATE = (
    re.compile(r"estimate\b"),
    re.compile(r"approximately how many\b"),
    re.compile(r"roughly how many\b"),
    re.compile(r"fermi\b"),
    re.compile(
        r"how many (?:\w+(?: \w+){0,3} (?:are|is|does|do|would|will|could|can|did|has|have) "
        r"(?:there |it )?(?:in|on|fit|be|take|happen|occur|spoken|made|born|die)\b|"
        r"times (?:has|have|does|do|did|will|would)\b)"
    ),
)
_CONSTRAINT = re.compile(
    r"must(?: not)?\b|cannot|can't|can not|at least|at most|exactly\b|no two|only once|"
    r"adjacent|not (?:before|after|next to)|immediately (?:before|after)|neither|unless|"
    r"constraints?\b|each (?:person|day|slot|team)\b"
)
_PLANNING_WORDS = word_set(
    """
    schedule scheduling arrange arrangement seat seating assign allocate order ordering
    timetable rota roster
    """
)
_QUESTION_MATH = re.compile(
    r"how (?:many|much|long|far|old|fast|often|tall|big|heavy)\b|"
    r"what(?:'s|\s+is|\s+was|\s+will|\s+would|\s+are|\s+were)?\s+(?:be\s+)?(?:the\s+)?"
    r"(?:[\w']+\s+){0,3}?"
    r"(?:total|number|amount|sum|percentage|percent|cost|price|value|average|difference|"
    r"ratio|probability|area|perimeter|speed|distance|age|result|answer|remainder|minimum|"
    r"maximum|final|date|times?|day)\b|what(?:'s| is) -?\d|by how|"
    r"(?:which|who|what)\b[^?]{0,80}\b(?:first|last|second|third|fastest|slowest|oldest|"
    r"youngest|tallest|shortest|left|right|truth)\b|does \w+ (?:tell|lie|have)|"
    r"(?:at|in|after|before|between) (?:what|how)|"
    # "when does the second train catch up?": a time asked for, with quantities around it
    r"when (?:will|does|do|did|would|is|are|can)\b"
)
_HOW_MANY = re.compile(r"how (?:many|much)\b")
# A how-to question: with "in <language>" after it, it asks for code.
_HOW_TO = re.compile(r"\bhow (?:do|can|could|would|should|to)\b(?: (?:i|you|we|one)\b)?")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")

# --------------------------------------------------------------------------- vision
_VISUAL_NOUNS = word_set(
    """
    screenshot screenshots screencap screengrab photo photos photograph photographs
    picture pictures pic pics image images diagram diagrams chart charts graph graphs plot
    plots figure figures drawing drawings painting paintings sketch scan scans x-ray x-rays
    meme memes infographic infographics flowchart flowcharts whiteboard snapshot snapshots
    selfie selfies thumbnail thumbnails logo logos illustration illustrations artwork
    handwriting receipt slide slides screen
    """
)
_VISION_REF_NOUNS = (
    r"(?:screen ?shots?|screen ?caps?|screen ?grabs?|photos?|"
    r"photographs?|pictures?|pics?|images?|diagrams?|charts?|graphs?|plots?|figures?|"
    r"drawings?|paintings?|sketch(?:es)?|scans?|x-rays?|memes?|infographics?|flowcharts?|"
    r"whiteboard|snapshots?|selfies?|thumbnails?|logos?|illustrations?|artwork|handwriting|"
    r"receipt|slides?)"
)
_VISION_REF = re.compile(
    r"(this|these|that|attached|above|below|uploaded|enclosed|following|my|in the|on the|"
    r"from the|the)\s+((?:[\w-]+\s+)?)(" + _VISION_REF_NOUNS.removeprefix("(?:") + r"\b"
)
# Every match of _VISION_REF contains one of these (the determiners are too common to
# search for, the nouns are not).
_VISION_REF_STEMS = _literal_starts(_VISION_REF_NOUNS)
_VISION_STRONG_DET = word_set("this these attached above below uploaded enclosed following")
_VISION_IDIOM = word_set(
    """
    big bigger whole full overall public brand self body corporate mental clear clearer
    better accurate complete broader rosy pretty same different general rough true bleak
    grim positive negative professional company personal good bad great
    """
)
_VISION_AFTER_BLOCK = frozenset({("of", "speech"), ("of", "health")})
_VISION_AFTER_STRONG = word_set("above below attached i you here")
_VISION_ASK = re.compile(
    r"what(?:'s| is| do you| can you)? (?:see|shown|depicted|pictured|in (?:this|the) "
    r"(?:image|photo|picture|screenshot))\b|what(?:'s| is) (?:on|in) (?:the|this|my) screen\b|"
    r"look at (?:this|the) (?:image|photo|picture|screenshot|chart|graph|diagram)|"
    r"can you see\b|describe (?:the|this) (?:image|photo|picture|scene|screenshot)|"
    r"(?:shown|depicted|pictured|visible) (?:in|on) (?:the|this)\b"
)
_VISION_ASK_WORDS = word_set("see shown depicted pictured screen look describe visible")

# --------------------------------------------------------------------------- quick
_QUICK_OPENER = re.compile(r"\W*(?:please\s+|can you\s+|could you\s+)?([a-z]+)")
_PROSE_LINE = re.compile(r"\n[A-Z\"'(][^\n]{40,}[.!?\"')][ \t]*(?=\n|$)")


@dataclass(frozen=True)
class Classification:
    """The route chosen for a prompt, the evidence per route, and why."""

    route: str
    scores: Mapping[str, float]
    confidence: float
    reasons: tuple[str, ...]
    runner_up: str = ""
    has_image: bool = False
    # Calibrated probability per built-in route from the learned model (empty without it).
    probabilities: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ContextHint:
    """Where a prompt comes from: the application that had the focus when it was asked.

    `app` is the window class or process name as detected (shown in the reasons), `route`
    the route that application leans to ("" for none): see `labrouter.desktop.focus`.
    """

    app: str
    route: str = ""


@dataclass
class _Evidence:
    """Scores and reasons per route while one prompt is being examined."""

    scores: dict[str, float]
    reasons: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    cheap: str = ""  # "arithmetic" or "definition": a one-line question that stays quick
    keywords: dict[str, float] = field(default_factory=dict)  # configured keywords' part

    def add(self, route: str, weight: float, reason: str) -> None:
        if weight == 0:
            return
        self.scores[route] = self.scores.get(route, 0.0) + weight
        self.reasons.setdefault(route, []).append((weight, f"{route}: {reason}"))


@dataclass(frozen=True)
class _Text:
    """The views of one prompt that the features share, computed once."""

    text: str  # the analysed text (head and tail of a huge prompt)
    nl: str  # "\n" + text, for the line patterns
    nl_low: str  # "\n" + text.lower()
    region: str  # lower-cased head and tail, where requests in words are looked for
    instr: str  # a shorter head and tail: where a one-sentence instruction would be
    tokens: frozenset[str]  # lower-cased words
    words: int  # number of words in the prompt
    passage: bool  # asks about a passage that comes with it ("based on this paragraph")


def _view(text: str) -> _Text:
    low = text.lower()
    if len(low) > REGION_HEAD + REGION_TAIL:
        region = low[:REGION_HEAD] + "\n" + low[-REGION_TAIL:]
    else:
        region = low
    if len(low) > 2 * INSTRUCTION_CHARS:
        instr = low[:INSTRUCTION_CHARS] + "\n" + low[-INSTRUCTION_CHARS:]
    else:
        instr = low
    split = low.translate(_WORD_SPLIT).split()
    passage = any(noun in instr for noun in _PASSAGE_NOUNS) and (
        _word_search(_PASSAGE_TASK, instr) is not None
    )
    return _Text(
        text, "\n" + text, "\n" + low, region, instr, frozenset(split), len(split), passage
    )


def _count(pattern: re.Pattern[str], text: str, limit: int = 20) -> int:
    """Matches of `pattern`, stopping at `limit` (the weights saturate long before; the
    code-shape rules pass the count at which theirs saturates, so a long prompt stops
    early)."""
    return len(list(islice(pattern.finditer(text), limit)))  # the loop in C


def _count_at_line_start(pattern: re.Pattern[str], text: str, limit: int = 20) -> int:
    """Matches preceded on their line only by blanks (a literal-led pattern stays fast)."""
    n = 0
    for m in pattern.finditer(text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        if not text[line_start : m.start()].strip(" \t") or text[line_start : m.start()].strip(
            " \t"
        ) == "async":
            n += 1
            if n >= limit:
                break
    return n


def _word_matches(pattern: re.Pattern[str], text: str, limit: int = 20) -> list[re.Match[str]]:
    """Matches that start at a word boundary (the patterns leave it out for speed).

    After a match inside a word ("in the" in "explain the") the search resumes one character
    later, so a real match overlapping it ("the following diagram") is not lost.
    """
    out: list[re.Match[str]] = []
    pos = 0
    while len(out) < limit and (m := pattern.search(text, pos)):
        start = m.start()
        if start == 0 or not text[start - 1].isalnum():
            out.append(m)
            pos = max(m.end(), start + 1)
        else:
            pos = start + 1
    return out


def _word_search(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    found = _word_matches(pattern, text, 1)
    return found[0] if found else None


def _word_matches_at(
    pattern: re.Pattern[str], text: str, starts: tuple[str, ...], limit: int = 20
) -> list[re.Match[str]]:
    """`_word_matches(pattern, text, limit)` for a pattern whose every match begins with one
    of the literals `starts`: tried only where one of them begins a word.

    The same matches: `_word_matches` keeps, in order, each match that begins a word at or
    after the end of the last one kept, and those can begin only where a literal begins a
    word. str.find is far faster than `re` scanning for a pattern led by an alternation.
    """
    found: set[int] = set()
    for lit in starts:
        i = text.find(lit)
        while i >= 0:
            if i == 0 or not text[i - 1].isalnum():
                found.add(i)
            i = text.find(lit, i + 1)
    out: list[re.Match[str]] = []
    pos = 0
    for i in sorted(found):
        if i >= pos and (m := pattern.match(text, i)):
            out.append(m)
            if len(out) >= limit:
                break
            pos = max(m.end(), i + 1)
    return out


def _in_lang_matches(cased: str) -> list[re.Match[str]]:
    """`list(_IN_LANG.finditer(cased))`, found from the names instead of the words before
    them (those are common, the names rare).

    A match is a word of _IN_LANG_WORDS (no left boundary), blanks, and a name that must
    begin right after them; so each name that follows a blank gives at most one place where
    a match can begin: where the longest of those words ends at its blanks, or a shorter
    one when that place lies inside the last match (as finditer resumes at its end).
    """
    names: set[int] = set()
    for name in _IN_LANG_STARTS:
        if name[0] not in cased:
            continue
        i = cased.find(name)
        while i >= 0:
            if i and cased[i - 1].isspace():
                names.add(i)
            i = cased.find(name, i + 1)
    out: list[re.Match[str]] = []
    end = 0
    for q in sorted(names):  # each follows a blank
        r = q - 1
        while r > 0 and cased[r - 1].isspace():
            r -= 1
        starts = [r - len(w) for w in _IN_LANG_WORDS if cased.endswith(w, 0, r)]
        starts = [p for p in starts if p >= end]
        if starts and (m := _IN_LANG.match(cased, min(starts))):
            out.append(m)
            end = m.end()
    return out


def _fs_task_search(instr: str) -> re.Match[str] | None:
    """`_word_search(_FS_TASK, instr)`, searched only in the stretches between "?", "!" and
    newlines that name a file-system object (the slow part of the pattern runs after every
    common verb).

    Exact: no match of _FS_TASK contains "?", "!" or a newline, and at the end of a segment
    word boundaries and the look-ahead for a word character behave as they do before the
    "?", "!" or newline that ends it.
    """
    found: set[int] = set()  # where the hints are (str.find is far faster than a regex)
    for hint in _FS_OBJECT_HINTS:
        i = instr.find(hint)
        while i >= 0:
            found.add(i)
            i = instr.find(hint, i + 1)
    done = 0  # the end of the last segment searched
    for at in sorted(found):
        if at < done:
            continue
        pos = max(instr.rfind(c, 0, at) for c in "?!\n") + 1
        ends = [i for c in "?!\n" if (i := instr.find(c, at)) >= 0]
        end = min(ends, default=len(instr))
        done = end
        while m := _FS_TASK.search(instr, pos, end):
            start = m.start()
            if start == 0 or not instr[start - 1].isalnum():
                return m
            pos = start + 1
    return None


class Classifier:
    """Classifies a prompt: the rules' evidence and the learned model, one decision with
    reasons. Thread-safe: it holds no mutable state.

    `extra_keywords` comes from `[classifier.keywords]` in the config: route -> {keyword or
    phrase: weight}. Keywords match whole words, case-insensitively; a route not built in
    becomes a new route that can win like the others. `model` is the learned model: the
    shipped one by default, None for the rules alone (the decision of the first version).
    """

    def __init__(
        self,
        extra_keywords: Mapping[str, Mapping[str, float]] | None = None,
        model: LinearModel | None | str = "default",
    ) -> None:
        self._extra: list[tuple[str, re.Pattern[str], float, str]] = []
        for route, words in (extra_keywords or {}).items():
            for word, weight in words.items():
                phrase = word.strip().lower()
                if not phrase:
                    continue
                # Whole words only, any spacing: the substring bug is the one we fix.
                body = r"\s+".join(re.escape(p) for p in phrase.split())
                pat = re.compile(r"(?<!\w)" + body + r"(?!\w)")
                self._extra.append((route, pat, float(weight), phrase))
        self._routes: tuple[str, ...] = BUILTIN_ROUTES + tuple(
            r for r in dict.fromkeys(route for route, *_ in self._extra) if r not in COST
        )
        self._model: LinearModel | None = (
            default_model() if isinstance(model, str) else model
        )

    @property
    def routes(self) -> tuple[str, ...]:
        """Every route this classifier can return: the built-in ones, then the user's."""
        return self._routes

    @property
    def model(self) -> LinearModel | None:
        """The learned model in use, None when only the rules decide."""
        return self._model

    def evidence(self, prompt: str) -> tuple[dict[str, float], list[str]]:
        """The rules' evidence for a prompt: score per route and every reason found.

        Used by the training script to compute the rule features the model learns from.
        """
        ev = self._evidence(_clip(prompt or ""))
        reasons = [r for route in ev.reasons for _, r in ev.reasons[route]]
        return dict(ev.scores), reasons

    def classify(
        self, prompt: str, image: bool = False, context: ContextHint | None = None
    ) -> Classification:
        """Classify one prompt; `image` is true when an image comes with it, `context` is
        where it comes from (the focused application), a prior that tips close calls."""
        text = _clip(prompt or "")
        ev = self._evidence(text)
        if self._model is None:
            if context and context.route in ev.scores:
                ev.add(context.route, APP_EVIDENCE, _context_reason(context))
            if image:
                ev.add(VISION, IMAGE_WEIGHT, "an image is attached")
            return self._decide(ev, image)
        return self._decide_learned(self._model, ev, text, image, context)

    def _evidence(self, text: str) -> _Evidence:
        ev = _Evidence(scores=dict.fromkeys(self._routes, 0.0))
        ev.scores[QUICK] = QUICK_PRIOR
        if text and not text.isspace():  # text.strip(), without copying it
            t = _view(text)
            shape = _code_shape(t, ev)
            code_request = _code_words(t, shape, ev)
            _reasoning(t, shape, code_request, ev)
            _vision_text(t, ev)
            _quick(t, shape, ev)
            ev.cheap = _cheap_question(t, shape)
            for route, pat, weight, phrase in self._extra:
                if pat.search(t.nl_low):
                    ev.add(route, weight, f"configured keyword {phrase!r}")
                    ev.keywords[route] = ev.keywords.get(route, 0.0) + weight
        return ev

    def _cost(self, route: str) -> int:
        return COST.get(route, USER_ROUTE_COST)

    def _decide_learned(
        self,
        model: LinearModel,
        ev: _Evidence,
        text: str,
        image: bool,
        context: ContextHint | None,
    ) -> Classification:
        """The model decides, from the text and the rules' evidence; then the few rules
        that must hold whatever it says: an image, cheap questions, the user's routes."""
        builtin = {r: ev.scores[r] - ev.keywords.get(r, 0.0) for r in BUILTIN_ROUTES}
        fired = [
            r for route in BUILTIN_ROUTES for _, r in ev.reasons.get(route, [])
            if "configured keyword" not in r
        ]
        feats = text_features(text)
        rules = rule_features(builtin, fired)
        hits: list[tuple[str, float, Sequence[float]]] = []
        logits = model.logits_from(feats, rules, builtin, hits)
        routes = model.routes
        notes: list[str] = []
        for route, weight in ev.keywords.items():
            # The user's keywords for a built-in route: their weight counts as log-odds.
            if route in routes:
                logits[routes.index(route)] += weight * model.temperature
                notes.append(f"{route}: configured keywords (+{weight:.1f})")
        if context and context.route in routes:
            # In calibrated log-odds: the prior means the same whatever the temperature.
            logits[routes.index(context.route)] += APP_PRIOR * model.temperature
            notes.append(_context_reason(context))
        probs = dict(zip(routes, model.probabilities(logits), strict=True))
        ranked = sorted(probs, key=lambda r: (-probs[r], self._cost(r)))
        route = ranked[0]
        confidence = probs[route]
        if image:
            route, confidence = VISION, 1.0
            notes.insert(0, "vision: an image is attached")
        elif not text or text.isspace():
            route, confidence = QUICK, 1.0
            notes.insert(0, "quick: an empty prompt")
        elif ev.cheap and route in (REASONING, CODE) and (
            ev.cheap == "arithmetic" or route == REASONING
        ):
            notes.insert(0, f"quick: a one-line {ev.cheap} question stays cheap (model said "
                            f"{route} {probs[route]:.2f})")
            route, confidence = QUICK, max(probs[QUICK], CHEAP_CONFIDENCE)
        elif route != QUICK and confidence < 0.6 and (
            len(text.split(maxsplit=FEW_WORDS)) <= FEW_WORDS  # at most FEW_WORDS words
        ) and not any(
            builtin[r] for r in (CODE, REASONING, VISION)
        ):
            # too little to go on and no rule saw code, maths or a picture: the model's
            # guess from a word or two is not worth an expensive route
            notes.insert(0, f"quick: a few words with no sign of {route} (model said "
                            f"{route} {probs[route]:.2f})")
            route, confidence = QUICK, probs[QUICK]
        user = [r for r in self._routes if r not in COST and ev.scores[r] >= THRESHOLD]
        if user and not image:
            best = max(user, key=lambda r: ev.scores[r])
            if route == QUICK or ev.scores[best] >= ev.scores.get(route, 0.0):
                notes.insert(0, f"{best}: configured keywords ({ev.scores[best]:.1f})")
                route = best
                confidence = _softmax_share(ev.scores, best)
        blank = not text or text.isspace()
        runner_up = next((r for r in ranked if r != route), "") if not blank else ""
        reasons: list[str] = []
        if route in probs:
            reasons.append(
                f"model: {route} {probs[route]:.2f}"
                + (f", {runner_up} {probs[runner_up]:.2f}" if runner_up in probs else "")
            )
        reasons += notes
        own = sorted(ev.reasons.get(route, []), key=lambda wr: -wr[0])
        reasons += [r for _, r in own[:3]]
        if route in routes and runner_up in routes:
            words = model.explain(feats, routes.index(route), routes.index(runner_up), hits=hits)
            if words:
                reasons.append(f"{route}: words " + ", ".join(repr(w) for w in words))
        scores = {r: round(max(s, 0.0), 3) for r, s in ev.scores.items()}
        return Classification(
            route=route,
            scores=MappingProxyType(scores),
            confidence=round(confidence, 3),
            reasons=tuple(reasons),
            runner_up=runner_up,
            has_image=image,
            probabilities=MappingProxyType({r: round(p, 4) for r, p in probs.items()}),
        )

    def _decide(self, ev: _Evidence, image: bool) -> Classification:
        """The rules alone (no model): thresholds and the cost order."""
        scores = {r: round(max(s, 0.0), 3) for r, s in ev.scores.items()}
        quick = scores[QUICK]
        ranked = sorted(scores, key=lambda r: (-scores[r], self._cost(r)))
        eligible = [
            r for r in ranked if r != QUICK and scores[r] >= THRESHOLD and scores[r] > quick
        ]
        note: list[str] = []
        if image:
            route = VISION
        elif not eligible:
            route = QUICK
        else:
            route = eligible[0]
            # Mixed signals: a cheaper qualifying route wins unless the dearer one is clearly
            # ahead (the article's "route to the cheaper model first").
            for other in eligible[1:]:
                if (
                    self._cost(other) < self._cost(route)
                    and scores[route] - scores[other] < STRONG_MARGIN
                ):
                    note.append(
                        f"mixed signals: {other} chosen over {route} "
                        f"({scores[other]:.1f} vs {scores[route]:.1f}), the cheaper route"
                    )
                    route = other
        if ev.cheap and route in (REASONING, CODE) and (
            ev.cheap == "arithmetic" or route == REASONING
        ):
            note.append(f"quick: a one-line {ev.cheap} question stays cheap")
            route = QUICK
        others = [r for r in ranked if r != route and scores[r] > 0]
        runner_up = others[0] if others else ""
        reasons = self._reasons(ev, route, runner_up, scores) + note
        return Classification(
            route=route,
            scores=MappingProxyType(scores),
            confidence=round(_softmax_share(scores, route), 3),
            reasons=tuple(reasons),
            runner_up=runner_up,
            has_image=image,
        )

    @staticmethod
    def _reasons(
        ev: _Evidence, route: str, runner_up: str, scores: Mapping[str, float]
    ) -> list[str]:
        own = sorted(ev.reasons.get(route, []), key=lambda wr: -wr[0])
        out = [r for _, r in own[:4]]
        if route == QUICK:
            if runner_up and runner_up != QUICK and scores[runner_up] > 0:
                out.append(
                    f"quick: {runner_up} evidence too weak ({scores[runner_up]:.1f}, "
                    f"needs {max(THRESHOLD, scores[QUICK]):.1f})"
                )
            elif not out:
                out.append("quick: the default, no sign of code, reasoning or an image")
        if runner_up and runner_up != QUICK and ev.reasons.get(runner_up):
            best = max(ev.reasons[runner_up], key=lambda wr: wr[0])[1]
            out.append(f"runner-up {best}")
        return out


# --------------------------------------------------------------------------- features


def _code_shape(t: _Text, ev: _Evidence) -> float:
    """Evidence that the prompt *contains* code or tool output; returns the amount found."""
    text, nl = t.text, t.nl
    before = ev.scores[CODE]
    if "```" in text:
        m = _FENCE.search(nl)
        lang = m.group(1).lower() if m else ""
        if lang and (lang in LANGUAGES or lang in _FENCE_LANGS):
            ev.add(CODE, 3.0, f"a fenced {lang} code block")
        else:
            ev.add(CODE, 1.0, "a fenced block")
    if "def" in t.tokens and (n := _count_at_line_start(_PY_DEF, nl, 3)):
        ev.add(CODE, 3.0 + min(n, 3) * 0.5, "a Python def")
    if "class" in t.tokens and _CLASS_DEF.search(nl):
        ev.add(CODE, 2.5, "a class definition")
    if t.tokens & _IMPORT_WORDS and (n := _count(_IMPORT, nl, 3)):
        ev.add(CODE, min(1.5 + n * 0.5, 3.0), "import/include lines")
    if "function" in t.tokens and _JS_FUNC.search(text):
        ev.add(CODE, 3.0, "a JavaScript function")
    if ("fn" in t.tokens or "func" in t.tokens) and _FN.search(text):
        ev.add(CODE, 3.0, "a fn/func definition")
    if _ARROW.search(text):  # literal-led: faster than an `in` gate
        ev.add(CODE, 1.0, "an => arrow")
    if ("{" in text or ";" in text) and t.tokens & _C_TYPES and _C_DECL.search(nl):
        ev.add(CODE, 2.5, "a C-style function signature")
    if "(" in text and (n := sum(_count(p, text, 4) for c, p in _CALLS if c in text)):
        ev.add(CODE, min(0.6 * n, 2.0), "method calls")
    if n := _count(_DECL, nl, 3):
        ev.add(CODE, min(1.0 * n, 3.0), "statements (let/for/if/return/assignment)")
    semis = _count(_SEMI_END, text, 6) if ";" in text else 0
    heads = set(_LINE_HEAD.findall(nl))
    braces = _count(_BRACE_CLOSE, nl, 6) if "}" in heads or "]" in heads else 0
    braces += sum(_count(p, nl, 6) for c, p in _BRACE_OPEN if c in text)
    if semis + braces >= 2:
        ev.add(CODE, min(0.5 * (semis + braces), 3.0), "brackets and semicolons")
    if n := sum(_count(p, text, 3) for c, p in _INDENT_BLOCK if c in text):
        ev.add(CODE, min(0.75 * n, 2.0), "an indented block")
    n = sum(_count(p, text) for need, p in _OPERATORS if need[0] in text and need[1] in text)
    if "c++" in t.tokens:
        n -= t.nl_low.count("c++")
    if n >= 2:
        ev.add(CODE, min(0.3 * n, 2.0), "code operators (== && :: ->)")
    if (">" in heads or "I" in heads) and _REPL.search(nl):
        ev.add(CODE, 2.0, "an interactive session (>>>)")
    if heads & {"/", "*", "#"} and _count(_LINE_COMMENT, nl, 2) >= 2:
        ev.add(CODE, 1.0, "code comments")
    n = sum(_count(pat, nl, 4) for gate, pat in _TRACEBACK if gate in t.tokens)
    if n:
        ev.add(CODE, 2.0 + min(n, 4) * 0.75, "a stack trace")
    n = sum(_count(pat, nl, 4) for gate, pat in _COMPILER if not gate or gate in t.tokens)
    if n:
        ev.add(CODE, 1.5 + min(n, 4) * 0.5, "a compiler or runtime error")
    if t.tokens & _SQL_TRIGGERS:
        upper = any(k in text for k in _SQL_UPPER_WORDS)
        n = (_count(_SQL_UPPER, text, 4) if upper else 0) + _count(_SQL_LOWER, t.nl_low, 4)
        if n:
            ev.add(CODE, min(1.5 + n * 0.75, 4.0), "SQL")
    n = 0
    # A counted line starts with a command then a blank: without that text, none can count.
    if any(_SHELL_WORD[c].search(nl) for c in t.tokens & SHELL_COMMANDS):
        n = sum(
            1
            for m in _SHELL_LINE.finditer(nl)
            if m.group(1) in SHELL_COMMANDS and _SHELL_ARGS.search(m.group(2))
        )
    if n:
        ev.add(CODE, min(2.0 + n * 0.5, 4.0), "a shell command line")
    # _PROMPT_LINE needs a line that starts with "$" or an "@" (the `in` tests "$ " as before)
    elif ("@" in text or ("$" in heads and "$ " in text)) and (n := _count(_PROMPT_LINE, nl, 3)):
        ev.add(CODE, min(1.5 + n * 0.5, 3.0), "a shell prompt line")
    if "`" in text and (n := _count(_INLINE_CODE, text, 3)):
        ev.add(CODE, min(0.75 * n, 2.0), "inline code in backticks")
    if "from" in t.tokens and "run" in t.tokens and (n := _count(_DOCKERFILE, nl, 3)) >= 2:
        ev.add(CODE, min(1.5 * n, 4.0), "a Dockerfile")
    if ":\n" in text or ":\r\n" in text:
        nested = _count(_YAML_NESTED[0], nl, 6)
        if "\t" in text:
            nested = min(nested + _count(_YAML_NESTED[1], nl, 6), 6)
        if nested >= 2 and (_YAML_TOP.search(nl) or nested >= 4):
            ev.add(CODE, min(1.0 + 0.5 * nested, 4.0), "YAML configuration")
    if '"' in heads and _JSON_GATE.search(text) and _count(_JSON_KEY, nl, 3) >= 3:
        ev.add(CODE, 1.0, "JSON")
    if "[" in heads and _INI_SECTION.search(nl) and _count(_INI_KEY, nl, 2) >= 2:
        ev.add(CODE, 3.0, "an INI/TOML configuration")
    if (heads & {"@", "+", "-"} or "\ndiff --git " in nl or "\nindex " in nl) and (
        n := _count(_DIFF, nl, 3)
    ):
        ev.add(CODE, 3.0 + min(n, 3) * 0.5, "a diff")
    elif "+" in heads and _count(_DIFF_PLUS, nl, 2) >= 2 and semis + braces >= 1:
        ev.add(CODE, 1.5, "diff-like +/- lines")
    if "<<<<<<<" in text and _count(_CONFLICT, nl, 2) >= 2:
        ev.add(CODE, 4.0, "a merge conflict")
    if "<" in text and (n := _count(_HTML, text, 4)) >= 2:
        ev.add(CODE, min(1.0 + 0.5 * n, 3.0), "HTML markup")
    if "/" in text and any(
        len(_REGEX_META.findall(m.group(1))) >= 2 for m in _REGEX_LITERAL.finditer(text)
    ):
        ev.add(CODE, 1.0, "a regular expression")
    return ev.scores[CODE] - before


def _sense_ok(words: str, blocked: frozenset[str]) -> bool:
    """False when a word next to the noun gives it its everyday sense ("a yoga class")."""
    return not any(w in blocked for w in words.split())


def _code_words(t: _Text, shape: float, ev: _Evidence) -> bool:
    """Evidence from what the prompt asks for: requests for code, languages, vocabulary.

    Returns whether the prompt explicitly asks for code ("write a function to ...").
    """
    region, tokens = t.region, t.tokens
    requested = False
    if tokens & _FUNCTION_WORDS:
        for m in _word_matches_at(_FUNCTION_REQUEST, region, _CODE_VERB_STARTS):
            if _sense_ok(m.group(1), FUNCTION_EVENT_WORDS):
                ev.add(CODE, 4.0, "asks for a function")
                requested = True
                break
    if "class" in tokens or "classes" in tokens:
        for m in _word_matches_at(_CLASS_REQUEST, region, _CODE_VERB_STARTS):
            if _sense_ok(m.group(1), CLASS_NONCODE_WORDS):
                ev.add(CODE, 3.5, "asks for a class")
                requested = True
                break
    if not requested and tokens & _PROGRAM_WORDS:
        for m in _word_matches_at(_PROGRAM_REQUEST, t.instr, _CODE_VERB_STARTS):
            noun, after, after2 = m.group(2), m.group(3), m.group(4)
            if not _sense_ok(m.group(1), NONCODE_BEFORE.get(noun, frozenset())):
                continue
            if after in NONCODE_AFTER.get(noun, frozenset()) and (
                after != "for" or after2 in {"a", "an", "the", "my", "our", "your"}
            ):
                continue
            if noun == "query" and not tokens & {"sql", "database", "table", "mongodb"}:
                continue
            ev.add(CODE, 2.5, f"asks for {noun} work")
            requested = True
            break
    if shape >= 1 and (given := _word_search(_CODE_GIVEN, region)):
        ev.add(CODE, 1.5, f"refers to the {given.group(1)}")

    # Languages: the unambiguous names by token; python, java, go, rust, c ... only next to
    # a code noun ("Python code", "a Java solution") or after "in"/"using" ("in Rust").
    langs: set[str] = set(tokens & LANGUAGES)
    lang_request = False
    if tokens & (LANGUAGES | _AMBIGUOUS_LANGS):
        for lang in sorted(tokens & _LANG_NEXT_WORD.keys()):
            for m in _word_matches(_LANG_NEXT_WORD[lang], region):
                if m.group(1) in CODE_NOUNS and not (
                    lang == "python" and _is_snake(t, m.start())
                ):
                    langs.add(lang)
                    lang_request = True
                    break
        # The same head and tail as t.region, with its case ("in C", not "in c").
        cased = t.text
        if len(cased) > REGION_HEAD + REGION_TAIL:
            cased = cased[:REGION_HEAD] + "\n" + cased[-REGION_TAIL:]
        for m in _in_lang_matches(cased):
            lang = m.group(1).lower()
            if lang in {"c", "r"} and (
                not m.group(0).startswith(("in", "using"))
                or _NOT_A_LANGUAGE_AFTER.match(cased, m.end())
            ):
                continue  # "convert 30 degrees to C", "a waltz in C major"
            langs.add(lang)
            # "Implement a queue ... in Python": a code verb in the same sentence.
            start = max(t.region.rfind(".", 0, m.start()), t.region.rfind("\n", 0, m.start()))
            if _CODE_VERB_WORD.search(t.region, start + 1, m.start()) or _HOW_TO.search(
                t.region, start + 1, m.start()
            ):
                lang_request = True  # "how do I reverse a linked list in C++?" too
        if "python" in tokens and "python" not in langs and not _is_snake(t, -1):
            langs.add("python")
    scale = 0.5 if shape < 1 and t.words > 150 else 1.0  # words in a passage, not a task
    if langs:
        shown = ", ".join(sorted(langs)[:3])
        ev.add(CODE, scale * (1.0 + min(len(langs) - 1, 2) * 0.25), f"names {shown}")
        if lang_request and not requested and _word_search(_ABOUT_QUESTION, region[:200]):
            lang_request = False  # "the differences between Python code and Java code"
        if lang_request:
            ev.add(CODE, 2.0, f"asks for {shown} code")

    terms = tokens & CODE_TERMS_STRONG
    common = terms & CODE_TERMS_COMMON
    rare = terms - common
    weight = scale * min(0.6 * len(rare) + 0.2 * len(common), 2.5)
    if weight >= 0.4:
        shown = ", ".join(sorted(rare or common)[:3])
        ev.add(CODE, weight, f"programming terms ({shown})")

    if "given" in tokens and "return" in tokens and _word_search(_CODING_PROBLEM, region):
        ev.add(CODE, 2.5, "a coding problem (given ..., return ...)")
        requested = True
    for tool in sorted(tokens & TOOL_WORDS.keys()):  # sorted: the same reason every run
        if used := tokens & TOOL_WORDS[tool]:
            ev.add(CODE, 1.5, f"{tool} work ({', '.join(sorted(used)[:2])})")
            break
    if shape < 2:
        for cmd in sorted(tokens & SHELL_COMMANDS):
            if _word_search(_SHELL_FLAG[cmd], t.instr):
                ev.add(CODE, 2.0, f"a {cmd} command")
                break
    if tokens & _FS_TRIGGERS and (fs := _fs_task_search(t.instr)):
        end = t.instr.find("\n", fs.end())
        quals = _count(_FS_QUALIFIER, t.instr[fs.start() : end if end > 0 else None], 4)
        if quals:
            ev.add(CODE, 2.0 + 0.5 * min(quals, 3), "a shell task on files")
        else:
            ev.add(CODE, 1.0, "a task on files")
    return requested or lang_request


def _is_snake(t: _Text, start: int) -> bool:
    """True when "python" means the snake: animal words near it and no code nouns."""
    if start < 0:
        start = t.region.find("python")
    window = t.region[max(0, start - 80) : start + 80].translate(_WORD_SPLIT).split()
    near = set(window)
    return bool(near & SNAKE_WORDS) and not near & (CODE_NOUNS - {"version"})


def _quantities(text: str, tokens: frozenset[str]) -> int:
    """Numbers (not years, not citations like [4]) and number words in a short text."""
    n = 0
    for m in _NUMBER.finditer(text):
        start = m.start()
        if start and (text[start - 1].isalnum() or text[start - 1] in "[-/."):
            continue  # part of a word, a citation, a date or a version
        if not _YEAR.match(m.group(0)):
            n += 1
        if n >= 20:
            break
    # "one-third", "twenty-five": number words joined by a hyphen are one token.
    joined = sum(1 for tok in tokens if "-" in tok and tok.partition("-")[0] in NUMBER_WORDS)
    return n + len(tokens & NUMBER_WORDS) + joined


def _last_question(text: str) -> str:
    """The last or next-to-last sentence before any options block, if it is a question."""
    cut = len(text)
    for pat in (_OPTIONS_HEAD, _OPTION_LINE):
        m = pat.search("\n" + text[-3000:])
        if m:
            cut = min(cut, len(text) - min(len(text), 3000) + m.start())
    tail = text[:cut].rstrip()[-400:]
    parts = [p for p in _SENTENCE_SPLIT.split(tail) if p.strip()]
    for part in reversed(parts[-2:]):
        if part.rstrip().endswith("?"):
            return part.strip()
    return ""


def _reasoning(t: _Text, shape: float, code_request: bool, ev: _Evidence) -> None:
    """Evidence of a problem to think through: word problems, equations, logic, proofs.

    When the prompt asks for code, the maths in it is the subject of that code ("write a
    function to compute the probability ..."): its evidence counts half.
    """
    text, region, tokens = t.text, t.region, t.tokens
    scale = 0.5 if code_request else 1.0

    def add(weight: float, reason: str) -> None:
        ev.add(REASONING, weight * scale, reason)

    if t.words < MAX_PROBLEM_WORDS:
        quantities = _quantities(text, tokens)
        question = _last_question(text).lower()
        arithmetic = len(tokens & ARITHMETIC_WORDS)
        if quantities >= 2 and question and _QUESTION_MATH.search(question):
            weight = 2.5 + min(quantities, 6) * 0.15 + min(arithmetic, 4) * 0.2
            if t.passage:  # numbers to read off a given passage, not to compute with
                weight *= 0.6
            add(weight, "quantities and a question")
        elif quantities >= 1 and question and (
            arithmetic >= 2 or (_HOW_MANY.search(question) and text.count(".") >= 1)
        ):
            # "I have a yam and two potatoes. How many vegetables do I have?"
            add(2.0, "a quantity and a question about it")

    # "(A)" in text or "(a)" in text or "A." in text or "A)" in text, as two regexes: `re`
    # scans for a literal faster than `in` does for a short one
    gate = _OPTION_GATES[0].search(text) or _OPTION_GATES[1].search(text)
    n_opts = _count(_OPTION_LINE, t.nl, 10) if gate else 0
    # the head's word stands between blanks, ":" or a newline: it is a token
    if (
        t.tokens & {"options", "choices"}
        and _OPTIONS_HEAD.search(t.nl_low)
        and (n_opts >= 2 or _count(_YESNO_OPTION, t.nl_low) >= 2)
    ):
        add(2.5, "a multiple-choice question")
    elif n_opts >= 3:
        add(1.0, "lettered choices")
    if ("true" in tokens or "false" in tokens) and _BOOL_EXPR.search(text):
        add(3.0, "a boolean expression to evaluate")
    n = _count(_ARITH_PAREN, t.instr) + _count(_ARITH_CHAIN, t.instr)
    if "what is" in region:
        n += _count(_ARITH_WORDS, region)
    if n:
        add(2.0 + min(n, 3) * 0.3, "an arithmetic expression")
    if shape < 3:
        eq = _count(_EQ_POWER, region) if "^" in region else 0
        eq += _count(_EQ_IMPLICIT, region) + _count(_EQ_FUNC, region) + _count(_EQ_SYMBOL, region)
        eq += _count(_EQ_VAR_OP, region)
        for m in _EQ_COMPARE.finditer(region):
            before = region[max(0, m.start() - 3) : m.start()]
            if _VARIABLE_BEFORE.fullmatch(before):  # "x = 3", "n>2": a variable
                eq += 1
        if eq:
            add(min(0.75 * eq, 2.5), "an equation or formula")
    if tokens & _MATH_VERBS and _word_search(_MATH_REQUEST, region):
        add(1.5, "asks to solve or calculate")
    if tokens & _CALCULUS_WORDS and _word_search(_CALCULUS_OF, region):
        add(2.0, "calculus on an expression")
    if tokens & _PROOF_WORDS and _word_search(_PROOF, t.instr):
        add(2.0, "asks for a proof")
    if tokens & _PROBABILITY_WORDS and (n := len(_word_matches(_PROBABILITY, t.instr))):
        add(min(1.5 + 0.5 * n, 2.5), "probability")
    short = t.words < MAX_PROBLEM_WORDS  # puzzles are short; skip their rules on long text
    n = len(_word_matches(_LOGIC, region, 8)) if short and tokens & _LOGIC_TRIGGERS else 0
    logic_words = len(tokens & LOGIC_TERMS) if short else 0
    if n or logic_words >= 2:
        add(min(1.0 * n + 0.5 * logic_words, 3.5), "a logic puzzle")
    if tokens & {"plausible", "valid", "invalid", "true"} and _word_search(_JUDGEMENT, region):
        add(2.0, "asks to judge a statement")
    if (maths := len(tokens & MATH_TERMS)) >= 2:
        add(min(0.3 * maths, 1.5), "mathematical terms")
    if tokens & {"step", "step-by-step", "your", "think"} and any(
        p.search(region) for p in _STEP_BY_STEP
    ):
        add(2.0, "asks for step-by-step reasoning")
    if tokens & {"many", "estimate", "fermi"} and any(
        _word_search(p, t.instr) for p in _ESTIMATE
    ):
        add(1.0, "an estimate")
    if short and tokens & _PLANNING_WORDS:
        n = len(_word_matches(_CONSTRAINT, region, 8))
        if n >= 3:
            add(min(1.0 + 0.5 * n, 3.0), "planning under constraints")


def _vision_text(t: _Text, ev: _Evidence) -> None:
    """A request about a picture named in the text (no image attached)."""
    if not t.tokens & _VISUAL_NOUNS:
        return
    best = 0.0
    # t.instr is all of the prompt when it is short: the token test above then did this
    whole = len(t.instr) + 1 == len(t.nl_low)
    refs = (
        _word_matches(_VISION_REF, t.instr)
        if whole or any(stem in t.instr for stem in _VISION_REF_STEMS)
        else []
    )
    for m in refs:
        det, adjectives = m.group(1), m.group(2).split()
        if any(a in _VISION_IDIOM for a in adjectives):
            continue  # "the big picture", "brand image"
        rest = t.instr[m.end() : m.end() + 12].split()
        if tuple(rest[:2]) in _VISION_AFTER_BLOCK or rest[:1] == ["skating"]:
            continue  # "a figure of speech", "the picture of health", "figure skating"
        # "this chart", "the attached photo", "the diagram above": a picture at hand.
        strong = det in _VISION_STRONG_DET or any(a in _VISION_STRONG_DET for a in adjectives)
        strong = strong or bool(rest and rest[0] in _VISION_AFTER_STRONG)
        best = max(best, 2.5 if strong else 1.0)
        if best >= 2.5:
            break
    if best:
        ev.add(VISION, best, "refers to a picture")
    if t.tokens & _VISION_ASK_WORDS and _word_search(_VISION_ASK, t.instr):
        ev.add(VISION, 1.5, "asks what is shown")


def _quick(t: _Text, shape: float, ev: _Evidence) -> None:
    """Cues of a request a small model handles well; they tip mixed signals to quick."""
    region, tokens = t.region, t.tokens
    m = _QUICK_OPENER.match(region)
    opener = m.group(1) if m else ""
    if opener in QUICK_VERBS and tokens & QUICK_OBJECTS:
        ev.add(QUICK, 1.0, f"a writing task ({opener})")
    elif opener in {"summarize", "summarise", "paraphrase", "rephrase", "proofread",
                    "translate", "extract", "reword"}:
        ev.add(QUICK, 1.0, f"a text task ({opener})")
    meaning = tokens & {"mean", "means", "meaning"}
    if shape < 1.5 and meaning and _word_search(_ERROR_QUESTION, region):
        ev.add(QUICK, 2.5, "asks what an error message means, no code to fix")
    if shape < 1 and _word_search(_ABOUT_QUESTION, region[:200]):
        ev.add(QUICK, 0.75, "a question about, not a task in, the subject")
    if shape < 1 and t.passage:
        ev.add(QUICK, 1.0, "a question about a given passage")
    prose = _count(_PROSE_LINE, t.nl, 4) if shape < 1 else 0  # the weight saturates at 4
    if prose >= 2:
        ev.add(QUICK, min(0.25 * prose, 1.0), "mostly prose")


# "What is 2+2?", "what's 15% of 80", "12 times 7": one operation on two numbers.
_TRIVIAL_ARITHMETIC = re.compile(
    r"(?:(?:what(?:'s| is)|how much is|calculate|compute|quick question:?)\s+)?"
    r"-?\d[\d,]*(?:\.\d+)?\s*(?:[-+*/x×÷^]|plus|minus|times|divided by|multiplied by|"
    r"% of|percent of)\s*-?\d[\d,]*(?:\.\d+)?\s*(?:=\s*)?\??[.!]?"
)
# "What is a tensor?", "Who wrote Dune?", "define entropy": a definition or a one-line fact.
_DEFINITION = re.compile(
    r"(?:what(?:'s| is| are| was| were| does)|who (?:is|was|were|wrote|invented|discovered)|"
    r"define|definition of|meaning of|when (?:was|did|is)|where (?:is|was|are)|"
    r"which (?:country|city|planet|year))\b"
)
# A short question with these asks for work, not a definition ("what is the integral of").
_WORK_WORDS = word_set(
    """
    integral derivative solve probability sum product limit value equation remainder
    average total calculate compute how many much if then given prove area volume
    perimeter speed distance percent percentage ratio chance odds expected
    """
)
_CHEAP_MAX_WORDS = 12


def _cheap_question(t: _Text, shape: float) -> str:
    """"arithmetic" or "definition" when the prompt is a one-line cheap question, else ""."""
    if t.words > _CHEAP_MAX_WORDS or shape >= 1:
        return ""
    line = t.text.strip().lower()
    if "\n" in line:
        return ""
    if _TRIVIAL_ARITHMETIC.fullmatch(line):
        return "arithmetic"
    if (
        t.words <= 10
        and _DEFINITION.match(line)
        and not any(c.isdigit() or c in "=^+*/<>" for c in line)
        and not t.tokens & _WORK_WORDS
    ):
        return "definition"
    return ""


def _clip(text: str) -> str:
    """Prompts beyond MAX_ANALYSED are classified on their head and tail."""
    if len(text) > MAX_ANALYSED:
        return text[: MAX_ANALYSED - TAIL_ANALYSED] + "\n" + text[-TAIL_ANALYSED:]
    return text


def _softmax_share(scores: Mapping[str, float], route: str) -> float:
    """The rules' confidence: softmax share of `route`, so a close runner-up lowers it."""
    top = max(scores.values())
    exps = {r: math.exp((s - top) / TEMPERATURE) for r, s in scores.items()}
    return exps[route] / sum(exps.values())


def _context_reason(context: ContextHint) -> str:
    return f"{context.route}: focused application {context.app!r} leans to {context.route}"


_APP_SPLIT = re.compile(r"[-_. ]+")


def app_key(name: str) -> str:
    """An application name as the app map spells it: lower case, no ".exe", no path."""
    key = name.strip().replace("\\", "/").rsplit("/", 1)[-1].lower()
    return key[:-4] if key.endswith(".exe") else key


def context_for(app: str, overrides: Mapping[str, str] | None = None) -> ContextHint | None:
    """The context hint for a focused application, or None when there is no application.

    `overrides` is `[classifier.apps]` from the config: name -> route, "" to ignore an app
    the default map knows. The whole name is looked up first, then its parts.
    """
    key = app_key(app)
    if not key:
        return None
    table = {**DEFAULT_APP_ROUTES, **{app_key(k): v for k, v in (overrides or {}).items()}}
    for candidate in (key, *_APP_SPLIT.split(key)):
        if candidate in table:
            return ContextHint(app=app, route=table[candidate])
    return ContextHint(app=app, route="")


_default: Classifier | None = None


def classify(
    prompt: str,
    image: bool = False,
    extra_keywords: Mapping[str, Mapping[str, float]] | None = None,
    context: ContextHint | None = None,
) -> Classification:
    """Classify with a cached default `Classifier` (a new one when keywords are given)."""
    global _default
    if extra_keywords:
        return Classifier(extra_keywords).classify(prompt, image, context)
    if _default is None:
        _default = Classifier()
    return _default.classify(prompt, image, context)
