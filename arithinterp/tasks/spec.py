"""Task specs and what one problem means: its metadata (Python ints) and its rendering.

Every problem of a spec renders to the same number of tokens: operands are zero-padded to
their width and the answer to the answer width, so prompts stack into one tensor and a
token position means the same thing in every example (what patching needs).

Layout: ``<bos> a OP b = TARGET <eos>`` where TARGET depends on the format:

- ``plain``: answer digits, most significant first (``123+456=0579``);
- ``reversed``: least significant first (``123+456=9750``);
- ``scratchpad``: per-digit steps, ``|``, the plain answer;
- ``cot``: the same steps as a chain of thought, ``|``, the reversed answer; the first
  ``cot_tokens_removed`` step tokens are dropped (implicit-CoT curriculum, Deng et al. 2024).

Steps: addition writes each column sum ``a_k + b_k + carry_in`` as two digits (carry out,
answer digit) per column, least significant column first: ``09;07;05;``. Subtraction writes
(borrow out, answer digit). Multiplication writes, for each digit b_j (least significant
first), the partial product ``a * b_j`` reversed and, from j = 1, the running total
``a * (b mod 10^(j+1))`` reversed in parentheses: ``8601;2881(8607);`` (Bai et al. 2025).
A signed subtraction answer carries a sign token (``+`` or ``-``) before its digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from arithinterp.fields import check_bool, check_choice, check_int, described, is_int
from arithinterp.tasks.vocab import CHAR_VOCAB, Vocab

Op = Literal["add", "sub", "mul"]
Format = Literal["plain", "reversed", "scratchpad", "cot"]
OPS: tuple[str, ...] = ("add", "sub", "mul")
FORMATS: tuple[str, ...] = ("plain", "reversed", "scratchpad", "cot")
OP_CHAR = {"add": "+", "sub": "-", "mul": "*"}
_OP_WORD = {"add": "adds ('+')", "sub": "subtracts ('-')", "mul": "multiplies ('*')"}
_TYPED_PROBLEM = re.compile(r"(\d+)([^\d=])(\d+)=?")  # '12+34', '12+34=' (spaces removed)
MAX_DIGITS = 9  # keeps every value inside int64 and every prompt short


@dataclass(frozen=True)
class TaskSpec:
    """An arithmetic task: operation, operand widths and output format."""

    op: Op = described("add", "The operation: add, sub or mul.")
    digits_a: int = described(3, f"Digits of operand a (1-{MAX_DIGITS}).")
    digits_b: int = 3
    # None: every operand has exactly digits_* digits. An int: the digit count is drawn
    # uniformly from min..digits_* and the operand zero-padded to digits_*.
    min_digits_a: int | None = None
    min_digits_b: int | None = None
    format: Format = described("reversed", "How the answer is written: plain, reversed (least "
                               "significant digit first), scratchpad or cot.")
    signed: bool = False  # subtraction only: allow a < b (answer gets a sign token)
    cot_tokens_removed: int = 0

    use_bos: ClassVar[bool] = True  # examples are <bos> ... <eos>
    radix: ClassVar[int] = 10  # the base of the operands' digits

    def __post_init__(self) -> None:
        check_choice("op", self.op, OPS)
        check_choice("format", self.format, FORMATS)
        check_int("digits_a", self.digits_a, min=1, max=MAX_DIGITS)
        check_int("digits_b", self.digits_b, min=1, max=MAX_DIGITS)
        check_int("min_digits_a", self.min_digits_a, min=1, max=self.digits_a, optional=True)
        check_int("min_digits_b", self.min_digits_b, min=1, max=self.digits_b, optional=True)
        check_bool("signed", self.signed)
        check_int("cot_tokens_removed", self.cot_tokens_removed)
        if self.signed and self.op != "sub":
            raise ValueError("signed=True is only meaningful for op='sub'")
        if self.op == "sub" and not self.signed and self.digits_a < self.digits_b:
            raise ValueError("unsigned subtraction needs a >= b: digits_a must be >= digits_b")
        if self.cot_tokens_removed and self.format != "cot":
            raise ValueError("cot_tokens_removed is only meaningful for format='cot'")
        n_steps = len(self._full_steps_template())
        if not 0 <= self.cot_tokens_removed <= n_steps:
            raise ValueError(f"cot_tokens_removed must be in 0..{n_steps}, "
                             f"got {self.cot_tokens_removed}")

    # ---- widths and layout -------------------------------------------------------------
    @property
    def vocab(self) -> Vocab:
        """The task's vocabulary (one token per character)."""
        return CHAR_VOCAB

    @property
    def answer_width(self) -> int:
        """Number of answer digits (sign token not counted)."""
        if self.op == "add":
            return max(self.digits_a, self.digits_b) + 1
        if self.op == "sub":
            return max(self.digits_a, self.digits_b)
        return self.digits_a + self.digits_b

    @property
    def prompt_len(self) -> int:
        """Tokens up to and including '=' (with <bos>)."""
        return 1 + self.digits_a + 1 + self.digits_b + 1

    @property
    def seq_len(self) -> int:
        """Tokens in a rendered example, <bos> to <eos>."""
        return self.prompt_len + len(self.render_target(*self.example_problem())) + 1

    @property
    def max_cot_tokens(self) -> int:
        """Step tokens of the full chain (scratchpad / CoT formats; 0 otherwise)."""
        return len(self._full_steps_template()) if self.format in ("scratchpad", "cot") else 0

    @property
    def name(self) -> str:
        """Short label such as 'add3x3-reversed' ('sub3x3-reversed-signed' for signed
        subtraction)."""
        return f"{self.op}{self.digits_a}x{self.digits_b}-{self.format}" + (
            "-signed" if self.signed else "")

    @classmethod
    def from_name(cls, name: str) -> TaskSpec:
        """The task a name like 'add3x3-reversed', 'mul2x2-plain' or
        'sub3x3-reversed-signed' stands for."""
        m = re.fullmatch(r"(add|sub|mul)(\d)x(\d)-(\w+)(-signed)?", name)
        if m is None:
            raise ValueError(f"task name {name!r} is not of the form <op><digits>x<digits>-"
                             f"<format>[-signed], e.g. 'add3x3-reversed' (ops {OPS}, formats "
                             f"{FORMATS})")
        return cls(op=m[1], digits_a=int(m[2]), digits_b=int(m[3]), format=m[4],
                   signed=m[5] is not None)

    def answer_positions(self) -> list[int]:
        """Token position of answer digit k (k = 0 is the least significant digit)."""
        end = self.seq_len - 1  # position of <eos>
        w = self.answer_width
        first = end - w
        if self.format in ("plain", "scratchpad"):
            return [first + (w - 1 - k) for k in range(w)]
        return [first + k for k in range(w)]

    def sign_position(self) -> int | None:
        """Token position of the answer's sign token, or None for unsigned tasks."""
        return self.seq_len - 2 - self.answer_width if self.signed else None

    def operand_positions(self) -> dict[str, list[int]]:
        """Token position of each operand digit: {'a': [a_0, a_1, ...], 'b': [...]}, LSB first."""
        a_msb = 1
        b_msb = 1 + self.digits_a + 1
        return {
            "a": [a_msb + self.digits_a - 1 - i for i in range(self.digits_a)],
            "b": [b_msb + self.digits_b - 1 - j for j in range(self.digits_b)],
        }

    def position_labels(self) -> list[str]:
        """A readable name per token position: 'a2' (digit 2 of a), '=', 'c0' (answer digit 0).

        Scratchpad / CoT step tokens are 's0', 's1', ...; the answer's sign token is 'sign'.
        """
        labels = [f"t{p}" for p in range(self.seq_len)]
        labels[0], labels[self.prompt_len - 1], labels[-1] = "<bos>", "=", "<eos>"
        labels[1 + self.digits_a] = OP_CHAR[self.op]
        for which, positions in self.operand_positions().items():
            for i, p in enumerate(positions):
                labels[p] = f"{which}{i}"
        for k, p in enumerate(self.answer_positions()):
            labels[p] = f"c{k}"
        if self.signed:
            labels[self.sign_position()] = "sign"
        step = 0
        for p in range(self.prompt_len, self.seq_len):
            if labels[p].startswith("t"):
                labels[p] = f"s{step}"
                step += 1
        return labels

    # ---- operand ranges ----------------------------------------------------------------
    def operand_range(self, which: Literal["a", "b"]) -> tuple[int, int]:
        """Inclusive (low, high) of values an operand may take."""
        top = self.digits_a if which == "a" else self.digits_b
        low_digits = self.min_digits_a if which == "a" else self.min_digits_b
        low_digits = top if low_digits is None else low_digits
        low = 0 if low_digits == 1 else 10 ** (low_digits - 1)
        return low, 10**top - 1

    def is_valid(self, a: int, b: int) -> bool:
        """Whether (a, b) is a problem of this task."""
        if not (is_int(a) and is_int(b)):
            return False
        (la, ha), (lb, hb) = self.operand_range("a"), self.operand_range("b")
        if not (la <= a <= ha and lb <= b <= hb):
            return False
        return self.signed or self.op != "sub" or a >= b

    def check_problem(self, a: int, b: int) -> None:
        """Refuse (ValueError, naming the operand and its range) what is not a problem here."""
        if self.is_valid(a, b):
            return
        for which, value in (("a", a), ("b", b)):
            if not is_int(value):
                raise ValueError(f"operand {which} must be an integer, got {value!r}")
            lo, hi = self.operand_range(which)  # type: ignore[arg-type]
            if not lo <= value <= hi:
                raise ValueError(f"operand {which}={value} is outside {lo}..{hi} for task "
                                 f"{self.name}")
        raise ValueError(f"{a}-{b} is not a problem of task {self.name}: unsigned subtraction "
                         "needs a >= b")

    # ---- rendering ---------------------------------------------------------------------
    def render_prompt(self, a: int, b: int) -> str:
        """Prompt text up to and including '=' (no <bos>)."""
        self.check_problem(a, b)
        return f"{a:0{self.digits_a}d}{OP_CHAR[self.op]}{b:0{self.digits_b}d}="

    def render_target(self, a: int, b: int) -> str:
        """Everything after '=' (no <eos>), per the format."""
        self.check_problem(a, b)
        m = compute_metadata(self, a, b)
        digits = m.answer_digits  # LSB first
        sign = ("-" if m.answer < 0 else "+") if self.signed else ""
        plain = sign + "".join(str(d) for d in reversed(digits))
        rev = sign + "".join(str(d) for d in digits)
        if self.format == "plain":
            return plain
        if self.format == "reversed":
            return rev
        steps = "".join(_steps(self, m))
        if self.format == "scratchpad":
            return steps + "|" + plain
        return steps[self.cot_tokens_removed :] + "|" + rev

    def render(self, a: int, b: int) -> str:
        """Full example text (no special tokens)."""
        return self.render_prompt(a, b) + self.render_target(a, b)

    def display(self, a: int, b: int) -> str:
        """The example as a person reads it: '123+456=579'."""
        return self.render(a, b)

    def display_problem(self, a: int, b: int) -> str:
        """The problem as a person types it: '123+456'."""
        return self.render_prompt(a, b)[:-1]

    def example_problem(self) -> tuple[int, int]:
        """A problem of the task to show as an example (largest a, smallest b)."""
        return self.operand_range("a")[1], self.operand_range("b")[0]

    def parse_problem(self, text: str) -> tuple[int, int]:
        """Operands of a typed problem such as '12+34' (or '12 + 34 ='): the inverse of
        `display_problem`. Raises ValueError naming what is wrong: the form, the operator,
        an operand's digits."""
        example = self.display_problem(*self.example_problem())
        compact = re.sub(r"\s+", "", text)
        if not compact:
            raise ValueError(f"type a problem such as {example}")
        m = _TYPED_PROBLEM.fullmatch(compact)
        if m is None:
            raise ValueError(f"cannot read {text.strip()!r} as a problem: write two whole "
                             f"numbers and an operator, e.g. {example}")
        sa, op, sb = m.groups()
        if op != OP_CHAR[self.op]:
            raise ValueError(f"wrong operator {op!r}: this run's task {self.name} "
                             f"{_OP_WORD[self.op]}, e.g. {example}")
        a, b = int(sa), int(sb)
        for which, s, value, width in (("a", sa, a, self.digits_a), ("b", sb, b, self.digits_b)):
            if len(s) > width:
                raise ValueError(f"too many digits in operand {which} ({s}): task {self.name} "
                                 f"takes at most {width}")
            lo, hi = self.operand_range(which)  # type: ignore[arg-type]
            if not lo <= value <= hi:
                raise ValueError(f"operand {which} ({s}) must be in {lo}..{hi} for task "
                                 f"{self.name}")
        if not self.is_valid(a, b):
            raise ValueError(f"{compact} is not a problem of task {self.name}: unsigned "
                             "subtraction needs a >= b")
        return a, b

    def metadata(self, a: int, b: int) -> ProblemMeta:
        """Everything known about problem (a, b) (`compute_metadata`)."""
        return compute_metadata(self, a, b)

    @property
    def n_problems(self) -> int:
        """Number of distinct problems of the task (exact, by counting)."""
        (la, ha), (lb, hb) = self.operand_range("a"), self.operand_range("b")
        if self.op == "sub" and not self.signed:
            # pairs with a >= b: for each b, the a's in [max(la, b), ha]
            return sum(max(0, ha - max(la, y) + 1) for y in range(lb, hb + 1))
        return (ha - la + 1) * (hb - lb + 1)

    def _full_steps_template(self) -> str:
        a, b = self.example_problem()
        return "".join(_steps(self, compute_metadata(self, a, b)))


@dataclass(frozen=True)
class ProblemMeta:
    """Everything known about one problem, computed with Python integers.

    Digit lists are least-significant first. ``carry_in[k]`` is the carry (addition,
    multiplication) or borrow (subtraction) flowing *into* answer position k, so
    ``carry_in[0] == 0``. For multiplication ``running_sums[k]`` is Bai et al.'s
    c_k = sum_{i+j=k} a_i b_j + floor(c_{k-1} / 10), whose last digit is answer digit k.
    """

    a: int
    b: int
    answer: int
    a_digits: tuple[int, ...]
    b_digits: tuple[int, ...]
    answer_digits: tuple[int, ...]  # digits of |answer|, answer_width of them
    carry_in: tuple[int, ...]
    column_sums: tuple[int, ...]  # add: a_k+b_k+carry_in; sub: a_k-b_k-borrow_in; mul: c_k
    partial_products: tuple[tuple[int, ...], ...] = field(default=())  # [i][j] = a_i * b_j
    running_sums: tuple[int, ...] = field(default=())

    @property
    def n_carries(self) -> int:
        """Number of answer positions with a nonzero carry (or borrow) coming in."""
        return sum(1 for c in self.carry_in if c)


def digits_of(n: int, width: int) -> tuple[int, ...]:
    """The `width` lowest decimal digits of n >= 0, least significant first."""
    return tuple((n // 10**k) % 10 for k in range(width))


def compute_metadata(spec: TaskSpec, a: int, b: int) -> ProblemMeta:
    """Operand/answer digits, carries, partial products and running sums of one problem."""
    w = spec.answer_width
    ad, bd = digits_of(a, spec.digits_a), digits_of(b, spec.digits_b)
    pad = lambda ds: ds + (0,) * (w - len(ds))  # noqa: E731 - columns beyond an operand are 0
    if spec.op == "add":
        answer = a + b
        carry, carries, sums = 0, [], []
        for x, y in zip(pad(ad), pad(bd), strict=True):
            carries.append(carry)
            s = x + y + carry
            sums.append(s)
            carry = s // 10
        return ProblemMeta(a, b, answer, ad, bd, digits_of(answer, w), tuple(carries), tuple(sums))
    if spec.op == "sub":
        answer = a - b
        hi, lo = (a, b) if a >= b else (b, a)
        borrow, borrows, diffs = 0, [], []
        for x, y in zip(digits_of(hi, w), digits_of(lo, w), strict=True):
            borrows.append(borrow)
            d = x - y - borrow
            diffs.append(d)
            borrow = 1 if d < 0 else 0
        return ProblemMeta(a, b, answer, ad, bd, digits_of(abs(answer), w), tuple(borrows),
                           tuple(diffs))
    answer = a * b
    pp = tuple(tuple(x * y for y in bd) for x in ad)
    c_prev, carries, running = 0, [], []
    for k in range(w):
        carries.append(c_prev // 10)
        col = sum(pp[i][k - i] for i in range(len(ad)) if 0 <= k - i < len(bd))
        c_prev = col + c_prev // 10
        running.append(c_prev)
    return ProblemMeta(a, b, answer, ad, bd, digits_of(answer, w), tuple(carries),
                       tuple(running), pp, tuple(running))


def _steps(spec: TaskSpec, m: ProblemMeta) -> list[str]:
    """Scratchpad / CoT step strings (each ends in ';')."""
    if spec.op == "add":
        return [f"{s:02d};" for s in m.column_sums[: spec.answer_width - 1]]
    if spec.op == "sub":
        borrows_out = m.carry_in[1:] + (0,)
        return [f"{bo}{d % 10};" for bo, d in zip(borrows_out, m.column_sums, strict=True)]
    da = spec.digits_a
    steps = []
    for j, bj in enumerate(m.b_digits):
        step = "".join(map(str, digits_of(m.a * bj, da + 1)))
        if j:
            total = m.a * (m.b % 10 ** (j + 1))
            step += "(" + "".join(map(str, digits_of(total, da + j + 1))) + ")"
        steps.append(step + ";")
    return steps
