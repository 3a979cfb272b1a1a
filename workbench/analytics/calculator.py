"""Exact arithmetic for the assistant: a parsed expression over fractions, never ``eval``.

``+ - * / // % **``, parentheses, unary signs, decimals and ``sqrt``/``abs``/``round``/``min``/``max``.
Division is exact (``1/3 * 3 == 1``); the answer comes as a decimal string and, when it is not a whole
number, as the fraction too. Powers are bounded so a request cannot ask for ``9**9**9``.
"""

from __future__ import annotations

import ast
import math
import operator
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from ..errors import InvalidInput

MAX_EXPONENT = 1000
MAX_BITS = 13_000  # a power's or the answer's size at most (about 3,900 digits; Python prints ints up to 4,300)
MAX_ROUND_DIGITS = 100
MAX_CHARS = 500
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}


def _sqrt(x: Fraction) -> Fraction:
    if x < 0:
        raise InvalidInput("sqrt of a negative number", field="expression")
    n, d = x.numerator, x.denominator
    rn, rd = math.isqrt(n), math.isqrt(d)
    if rn * rn == n and rd * rd == d:
        return Fraction(rn, rd)  # exact
    with localcontext() as ctx:
        ctx.prec = 40
        return Fraction(Decimal(n).sqrt() / Decimal(d).sqrt())


def _round(x: Fraction, nd: Fraction = Fraction(0)) -> Fraction:
    if nd.denominator != 1 or abs(nd) > MAX_ROUND_DIGITS:  # round(1, 10**100) would build 10**(10**100)
        raise InvalidInput(f"round takes a whole number of digits up to {MAX_ROUND_DIGITS}", field="expression")
    return Fraction(round(x, int(nd)))


_FUNCS = {"sqrt": _sqrt, "abs": abs, "round": _round, "min": min, "max": max}
_ARITY = {"sqrt": (1, 1), "abs": (1, 1), "round": (1, 2), "min": (1, 100), "max": (1, 100)}


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        if isinstance(node.value, float) and not math.isfinite(node.value):  # 1e400 parses as inf
            raise InvalidInput(f"number too large: {node.value}", field="expression")
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if b.denominator != 1 or abs(b) > MAX_EXPONENT:
                raise InvalidInput(f"powers take a whole exponent up to {MAX_EXPONENT}", field="expression")
            if a == 0 and b < 0:
                raise InvalidInput("division by zero", field="expression")
            if max(a.numerator.bit_length(), a.denominator.bit_length()) * abs(int(b)) > MAX_BITS:
                raise InvalidInput(f"the power's result is too large (over {MAX_BITS} bits)", field="expression")
            return a ** int(b)
        op = _BIN.get(type(node.op))
        if op is None:
            raise InvalidInput(f"operator {type(node.op).__name__} is not supported", field="expression")
        if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and b == 0:
            raise InvalidInput("division by zero", field="expression")
        return Fraction(op(a, b))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        name, args = node.func.id, node.args
        lo, hi = _ARITY[name]
        if not lo <= len(args) <= hi or any(isinstance(a, ast.Starred) for a in args):
            raise InvalidInput(f"{name} takes {lo}" + (f" to {hi}" if hi > lo else "") + " argument(s)",
                               field="expression")
        return Fraction(_FUNCS[name](*[_eval(a) for a in args]))
    raise InvalidInput(f"not arithmetic: {ast.dump(node)[:80]}", field="expression")


def calculate(expression: str) -> dict[str, Any]:
    if not expression or len(expression) > MAX_CHARS:
        raise InvalidInput(f"expression must be 1-{MAX_CHARS} characters", field="expression")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise InvalidInput(f"cannot parse {expression!r}", field="expression") from None
    value = _eval(tree)
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_BITS:
        raise InvalidInput(f"the result is too large (over {MAX_BITS} bits)", field="expression")
    with localcontext() as ctx:  # the thread's own context is left as it was
        ctx.prec = 40
        dec = Decimal(value.numerator) / Decimal(value.denominator)
        text = str(value.numerator) if value.denominator == 1 else format(dec.normalize(), "f")
    out: dict[str, Any] = {"expression": expression, "result": text}
    if value.denominator != 1:
        out["fraction"] = f"{value.numerator}/{value.denominator}"
    return out
