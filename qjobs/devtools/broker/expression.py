"""QStash's `Upstash-Retry-Delay`: a small arithmetic language over `retried`, parsed here
and evaluated without `eval`.

The grammar (QStash's documentation): numbers, the variable `retried`, `+ - * /`, unary
minus, parentheses, and the functions `pow sqrt abs exp floor ceil round min max`. A
recursive-descent parser builds a tree of closures; anything else, and anything longer
or deeper than a delay expression needs to be, is refused with a message that says why.
"""

import math
import re
from collections.abc import Callable

MAX_LENGTH = 512
MAX_DEPTH = 32
MAX_DELAY_MS = 86_400_000.0
"""QStash waits at most a day between two attempts."""

Node = Callable[[int], float]

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|([A-Za-z_]+)|(.))")
_FUNCTIONS: dict[str, tuple[int, int, Callable[..., float]]] = {
    "pow": (2, 2, math.pow),
    "sqrt": (1, 1, math.sqrt),
    "abs": (1, 1, abs),
    "exp": (1, 1, math.exp),
    "floor": (1, 1, math.floor),
    "ceil": (1, 1, math.ceil),
    "round": (1, 1, round),
    "min": (1, 16, min),
    "max": (1, 16, max),
}


class ExpressionError(ValueError):
    """The text is not a retry-delay expression."""


def parse(text: str) -> Node:
    """The expression as a function of `retried` giving milliseconds, or ExpressionError."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters")
    parser = _Parser(_tokens(text))
    node = parser.sum(0)
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()!r}")
    return node


def delay_ms(node: Node, retried: int) -> float:
    """The delay before the next attempt, bounded to QStash's day; a result that is not a
    number (a root of a negative, an overflow) is refused."""
    try:
        value = float(node(retried))
    except (ArithmeticError, ValueError) as error:
        raise ExpressionError(f"cannot be evaluated for retried={retried}: {error}") from None
    if math.isnan(value):
        raise ExpressionError(f"is not a number for retried={retried}")
    return min(max(value, 0.0), MAX_DELAY_MS)


def _tokens(text: str) -> list[str]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            break
        position = match.end()
        number, name, symbol = match.groups()
        token = number or name or symbol
        if symbol is not None and symbol not in "+-*/(),":
            raise ExpressionError(f"unexpected character {symbol!r}")
        if token:
            tokens.append(token)
    if text[position:].strip():
        raise ExpressionError(f"unexpected text {text[position:]!r}")
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise ExpressionError(f"expected {expected or 'more'}, found {token or 'the end'}")
        self.position += 1
        return token

    def sum(self, depth: int) -> Node:
        node = self.product(depth)
        while self.peek() in ("+", "-"):
            operator, right = self.take(), self.product(depth)
            node = _add(node, right) if operator == "+" else _subtract(node, right)
        return node

    def product(self, depth: int) -> Node:
        node = self.unary(depth)
        while self.peek() in ("*", "/"):
            operator, right = self.take(), self.unary(depth)
            node = _multiply(node, right) if operator == "*" else _divide(node, right)
        return node

    def unary(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise ExpressionError(f"nested deeper than {MAX_DEPTH}")
        if self.peek() == "-":
            self.take()
            inner = self.unary(depth + 1)
            return lambda retried: -inner(retried)
        if self.peek() == "+":
            self.take()
            return self.unary(depth + 1)
        return self.atom(depth)

    def atom(self, depth: int) -> Node:
        item = self.take()
        if item == "(":
            node = self.sum(depth + 1)
            self.take(")")
            return node
        if item[0].isdigit():
            value = float(item)
            return lambda retried: value
        if item == "retried":
            return float
        if item in _FUNCTIONS:
            return self.call(item, depth)
        raise ExpressionError(f"unknown name {item!r}")

    def call(self, name: str, depth: int) -> Node:
        least, most, function = _FUNCTIONS[name]
        self.take("(")
        arguments = [self.sum(depth + 1)]
        while self.peek() == ",":
            self.take()
            arguments.append(self.sum(depth + 1))
        self.take(")")
        if not least <= len(arguments) <= most:
            raise ExpressionError(f"{name} takes {least}-{most} arguments, not {len(arguments)}")
        return lambda retried: float(function(*(argument(retried) for argument in arguments)))


def _add(left: Node, right: Node) -> Node:
    return lambda retried: left(retried) + right(retried)


def _subtract(left: Node, right: Node) -> Node:
    return lambda retried: left(retried) - right(retried)


def _multiply(left: Node, right: Node) -> Node:
    return lambda retried: left(retried) * right(retried)


def _divide(left: Node, right: Node) -> Node:
    return lambda retried: left(retried) / right(retried)
