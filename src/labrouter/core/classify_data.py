"""Word lists for the prompt classifier (`core/classify.py`).

Owns vocabularies only: broad sets of programming, maths and logic terms, and the words that
change the sense of an ambiguous one ("a yoga class", "a social function"). Kept apart from
the rules so the rules stay readable. Standard library only; in fact it imports nothing.

Every term is lower case; the classifier matches whole words (tokens), never substrings,
which is the main thing the article's keyword router got wrong.
"""

from __future__ import annotations


def word_set(text: str) -> frozenset[str]:
    """A word list written as one string (easier to read and edit than a list literal)."""
    return frozenset(text.split())


# Programming terms that almost never mean anything else. Each distinct one found is mild
# evidence for `code`; none of them alone is enough to route (a question *about* an API is
# often a quick one), so the rules cap their sum.
CODE_TERMS_STRONG: frozenset[str] = word_set("""
    api apis endpoint endpoints json yaml toml xml html css http https url urls localhost
    regex regexes regexp substring substrings boolean booleans bool int ints
    str dict dicts tuple tuples hashmap hashmaps hashtable arraylist nullptr null undefined
    stdin stdout stderr argv argc segfault traceback stacktrace runtime compiler compile
    compiles compiled compiling recursion recursive recursively iterate iterates iterating
    iterator iterators refactor refactoring debug debugging debugger linter lint pytest
    unittest jest junit mock mocks async await coroutine coroutines mutex deadlock
    multithreading thread threads lambda lambdas closure closures callback callbacks
    getter setter constructor constructors destructor inheritance inherit inherits
    subclass superclass polymorphism interface interfaces enum enums struct structs
    pointer pointers malloc typedef namespace namespaces npm pip conda cargo maven gradle
    webpack docker dockerfile kubernetes k8s kubectl nginx git github gitlab repo
    codebase backend frontend database databases sql nosql mysql postgres postgresql
    sqlite mongodb redis varchar schema schemas orm query queries crud rest graphql
    grpc websocket websockets oauth jwt cli bash zsh shell powershell cron crontab
    filesystem subdirectory subdirectories directory directories symlink symlinks
    executable executables chmod chown sudo grep awk sed xargs ssh
    programming programmer programmers developer coding unicode ascii byte bytes
    bitwise bitmask bfs dfs dijkstra memoization memoize
    vlookup xlookup hlookup sumif sumifs countif countifs iferror arrayformula
    dataframe dataframes numpy pandas matplotlib sklearn pytorch tensorflow django flask
    fastapi react vue angular jquery nodejs express spring springboot laravel
    rails dotnet jvm llvm gcc clang rustc javac tsc webassembly wasm cuda
    variable variables parameter parameters args kwargs argument arguments
    return returns returned method methods function functions class classes object
    objects module modules package packages library libraries framework snippet
    script scripts program programs code implementation implement implements
    array arrays list lists string strings integer integers float floats char chars
    element elements index indices key keys value values file files folder folders
    input inputs output outputs bug bugs syntax exception exceptions error errors
    """)

# Of the terms above, the ones that are ordinary English far more often than code. They are
# counted at a lower weight (see classify.py) so "the value of the house" or "a list of
# files" adds almost nothing by itself.
CODE_TERMS_COMMON: frozenset[str] = word_set("""
    return returns returned method methods function functions class classes object objects
    module modules package packages library libraries framework program programs code
    implementation implement implements list lists string strings element elements index
    indices key keys value values file files folder folders input inputs output outputs
    bug bugs error errors exception exceptions argument arguments variable variables
    parameter parameters integer integers float floats char chars thread threads schema
    schemas query queries interface interfaces inherit inherits compile compiles compiled
    compiling runtime lambda closure closures repo shell rest express spring rails null
    undefined byte bytes array arrays script scripts snippet enum enums struct structs
    """)

# Programming languages and code tools whose names are not ordinary words. Ambiguous names
# (python, java, go, rust, ruby, swift, c, r, julia) are handled by rules in classify.py.
LANGUAGES: frozenset[str] = word_set("""
    javascript typescript js ts c++ cpp c# csharp f# golang kotlin scala haskell php perl
    lua matlab fortran cobol elixir erlang clojure ocaml dart solidity verilog vhdl
    powershell bash zsh sql mysql postgresql sqlite tsql plsql css scss sass latex
    tex jsx tsx makefile cmake dockerfile groovy assembly asm
    x86 arm64 vba prolog lisp scheme racket nim zig crystal pascal
    delphi awk sed regex
    """)

# Words that, right before "function", mean an event, and right before "class", mean a
# lesson, a rank or a category of travel; and that before "python" mean the snake.
FUNCTION_EVENT_WORDS: frozenset[str] = word_set("""
    social formal family corporate company office charity school public official gala
    evening wedding private fundraising networking civic community church state royal
    birthday holiday annual dinner
    """)
CLASS_NONCODE_WORDS: frozenset[str] = word_set("""
    yoga pilates spin spinning cycling dance ballet zumba fitness gym exercise boxing
    swimming cooking baking art painting drawing pottery music piano guitar singing
    english french spanish german chinese language history math maths science biology
    chemistry physics geography writing poetry economics literature philosophy drama
    evening night online weekend morning first second third business economy working
    middle upper lower ruling social master graduating graduate college school high
    senior junior freshman sophomore world weight heavyweight lightweight asset tax
    """)
SNAKE_WORDS: frozenset[str] = word_set("""
    snake snakes garden zoo pet pets bite bitten reptile reptiles ball burmese
    reticulated constrictor tank terrarium swamp everglades jungle rodent rodents
    shed shedding venomous scales egg eggs
    """)

# Nouns that, named next to a language ("a Java solution", "Python code"), make a request
# for code rather than a question about the language.
CODE_NOUNS: frozenset[str] = word_set("""
    code function functions method methods class classes script scripts program programs
    solution solutions implementation snippet module package library app application
    file files loop query queries command commands document regex test tests unit
    api version syntax error errors exception traceback compiler interpreter rule rules
    selector selectors stylesheet template component components hook hooks decorator
    pipeline workflow manifest config configuration migration migrations handler route
    routes statement statements expression expressions formula
    """)

# Mathematics vocabulary: each distinct term is mild evidence for `reasoning`.
MATH_TERMS: frozenset[str] = word_set("""
    equation equations inequality inequalities integral integrals derivative derivatives
    differentiate integrate polynomial polynomials quadratic cubic linear exponent
    exponents exponential logarithm logarithms log ln sqrt factorial factorials
    permutation permutations combination combinations combinatorics probability
    probabilities theorem theorems lemma corollary proof proofs prove proves axiom
    algebra algebraic geometry trigonometry calculus arithmetic triangle triangles
    rectangle square circle circles radius diameter circumference area perimeter
    hypotenuse angle angles parallelogram trapezoid polygon sphere cylinder cone
    fraction fractions numerator denominator divisible divisor divisors remainder
    modulo integer integers prime primes gcd lcm multiple multiples sum product quotient digits
    digit
    sequence series converge converges convergence limit limits matrix matrices
    determinant eigenvalue eigenvalues vector vectors variance median mean average
    expected odds dice die coin coins marbles urn deck cards percent percentage
    ratio ratios proportion proportional interest compound rate speed velocity
    acceleration distance km mph kmh hours minutes seconds
    """)

# Logic-puzzle vocabulary (knights and knaves, orderings, syllogisms, riddles).
LOGIC_TERMS: frozenset[str] = word_set("""
    puzzle puzzles riddle sudoku logically deduce deduction deductive infer inference
    syllogism premise premises conclusion fallacy valid invalid truth liar liars lies
    knights knaves contradiction statement statements paradox consistent necessarily uncertain
    tautology
    """)

# Number words, for word problems written without digits ("three sisters", "half of").
NUMBER_WORDS: frozenset[str] = word_set("""
    one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty
    ninety hundred thousand million dozen half halves twice double triple thrice quarter
    third thirds fourth fifth
    """)

# Words of arithmetic word problems (the relations between the quantities).
ARITHMETIC_WORDS: frozenset[str] = word_set("""
    total each per remaining remainder left altogether combined twice half more less
    fewer times average sum difference rest spent spends earns earned saved costs cost
    paid pays sold buys bought profit discount price prices gave gives received
    """)

# Opening verbs of requests that a small model answers well: rewriting, summarising,
# extracting, writing prose. They tip mixed signals toward `quick`.
QUICK_VERBS: frozenset[str] = word_set("""
    summarize summarise summarizing summary paraphrase rephrase reword rewrite proofread
    translate extract classify categorize categorise tag label identify list name suggest
    recommend brainstorm describe explain define discuss tell write compose draft create
    come give generate make provide share
    """)
QUICK_OBJECTS: frozenset[str] = word_set("""
    email emails letter letters poem poems haiku story stories essay essays tweet tweets
    post blog review reviews speech toast headline headlines slogan slogans caption
    captions summary title titles bio biography cover lyrics song songs joke jokes
    itinerary recipe recipes synonyms antonyms rhymes paragraph article outline
    invitation apology message description sentence sentences ad advertisement
    """)

# Commands that start a shell line; one of these in the prompt lets the shell rules run.
SHELL_COMMANDS: frozenset[str] = word_set("""
    ls cd grep egrep find awk sed cat echo chmod chown mkdir rmdir rm cp mv ln tar zip unzip
    gzip curl wget git docker kubectl pip pip3 npm npx yarn apt apt-get brew dnf yum pacman
    ssh scp rsync systemctl journalctl ps kill killall xargs head tail sort uniq wc cut tr
    make cargo go python python3 node export source du df touch less diff patch crontab
    ffmpeg openssl sudo conda poetry terraform ansible helm aws gcloud az psql mysql sqlite3
    jq nc ping dig iptables ufw mount dd
    """)

# Nouns of a file-system task ("find all files modified today"): shell work in words.
FS_OBJECTS: frozenset[str] = word_set("""
    file files directory directories folder folders filesystem filenames filename symlink
    symlinks permissions permission processes pid inode inodes subdirectory subdirectories
    """)

# Words before or after a "code noun" that give it another sense: a dress code, a fitness
# program, a movie script, a search query.
NONCODE_BEFORE: dict[str, frozenset[str]] = {
    "code": word_set("""
        dress zip postal post morse area country promo promotional discount coupon color
        colour bar genetic moral honor honour ethical secret cheat access penal civil tax
        building da vinci qr gift voucher referral
        """),
    "program": word_set("""
        fitness training exercise workout tv television radio loyalty degree study mentoring
        mentorship rewards reward volunteer wellness diet nutrition exchange graduate mba phd
        outreach community school government aid assistance educational education employee
        internship referral incentive recycling meal weight loss travel summer reading
        literacy health sports leadership onboarding certification
        """),
    "script": word_set("""
        movie film video youtube tv television radio podcast play theater theatre comedy
        sketch commercial ad advertising sales phone call interview wedding speech screen
        stage short presentation webinar tiktok skit
        """),
    "query": word_set("search google bing web research"),
}
NONCODE_AFTER: dict[str, frozenset[str]] = {
    # "for" only blocks when an article follows: "a script for a video" is prose,
    # "a script for renaming files" is code (see classify.py).
    "code": word_set("of"),
    "script": word_set("for about of where between"),
    "program": word_set("for of about"),
}

# A developer tool and the words of its work: "undo the last git commit", "a Kubernetes
# deployment with 2 replicas". Tooling is code by the label policy.
TOOL_WORDS: dict[str, frozenset[str]] = {
    "git": word_set(
        """commit commits branch branches rebase merge stash push pull checkout clone repo
        repository remote origin head reset revert cherry-pick tag"""
    ),
    "docker": word_set("container containers image images compose volume volumes build run"),
    "kubernetes": word_set(
        "pod pods deployment deployments service manifest replicas namespace ingress helm"
    ),
    "kubectl": word_set("pod pods deployment deployments service namespace logs apply"),
    "npm": word_set("install package packages dependency dependencies script scripts"),
    "pip": word_set("install package packages requirements virtualenv venv"),
    "nginx": word_set("config server location proxy upstream 502 504 ssl"),
    "terraform": word_set("plan apply state module provider resource"),
    "vim": word_set("buffer macro mapping plugin"),
    # spreadsheet formulas are code by the label policy (a formula is a small program)
    "excel": word_set(
        "formula formulas cell cells column columns row rows macro macros vba pivot sheet"
    ),
    "spreadsheet": word_set("formula formulas cell cells column columns macro macros"),
    "sheets": word_set("formula formulas cell cells column columns"),
}


# The focused application as a prior (`[classifier.apps]` in the config overrides it): the
# window class (X11 WM_CLASS), bundle or process name, lower-cased, without ".exe". A name
# matches a key equal to it or to one of its parts split at "-", "_", "." and spaces
# ("gnome-terminal-server" matches "terminal", "com.apple.mail" matches "mail").
EDITOR_APPS: frozenset[str] = word_set("""
    code vscode vscodium codium cursor zed sublime_text subl atom emacs gvim vim nvim
    neovide kate kwrite geany gedit gnome-text-editor jetbrains pycharm idea intellij
    webstorm goland clion rider phpstorm rubymine datagrip android-studio studio eclipse
    netbeans xcode qtcreator kdevelop notepad++ devenv spyder rstudio jupyterlab
    """)
TERMINAL_APPS: frozenset[str] = word_set("""
    terminal xterm uxterm urxvt rxvt konsole kitty alacritty wezterm wezterm-gui foot
    tilix terminator guake yakuake st iterm2 iterm hyper tabby warp windowsterminal
    cmd powershell pwsh mintty conhost ghostty xfce4-terminal lxterminal mate-terminal
    """)
MAIL_CHAT_APPS: frozenset[str] = word_set("""
    thunderbird evolution geary kmail mailspring outlook olk mail slack discord
    signal telegram telegramdesktop telegram-desktop element whatsapp teams msteams
    zoom skype messages wechat mattermost rocket.chat zulip
    """)
DEFAULT_APP_ROUTES: dict[str, str] = {
    **dict.fromkeys(EDITOR_APPS | TERMINAL_APPS, "code"),
    **dict.fromkeys(MAIL_CHAT_APPS, "quick"),
}
