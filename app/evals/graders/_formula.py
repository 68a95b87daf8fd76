"""A multi grader's ``calculate_output``: arithmetic over its sub-graders' scores, evaluated by ``simpleeval``.

OpenAI's graders guide allows ``+ - * / ^`` and ``min, max, abs, floor, ceil, exp, sqrt, log`` over the
sub-graders' names. ``^`` is the power, written ``**`` before parsing so it binds as in mathematics (Python's ``^``
is a looser-binding xor). A formula is checked whole when the grader is validated: its syntax, that it uses nothing
but numbers, those operators and functions and known names. Evaluating it can still fail on the values (a division
by zero, ``log(0)``): the multi grader then reports an error result, not an exception.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from simpleeval import InvalidExpression, SimpleEval

FUNCTIONS: dict[str, Any] = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}
_OPERATORS = {ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd}
_ALLOWED_NODES = (ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Call, ast.Load, *_OPERATORS)


MAX_DEPTH = 64  # of the expression tree: evaluation recurses, and no formula of scores needs more


def _depth(tree: ast.AST) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


class FormulaError(ValueError):
    """A formula that cannot be evaluated for any scores: bad syntax, an unknown name, a forbidden construct."""


class FormulaValueError(ValueError):
    """A valid formula whose value is not a finite number for these scores."""


@dataclass(frozen=True, slots=True)
class Formula:
    source: str
    names: frozenset[str]
    _tree: ast.AST

    @classmethod
    def parse(cls, source: str, names: Iterable[str]) -> Formula:
        """Check ``source`` over ``names`` (:class:`FormulaError` naming the problem)."""
        known = frozenset(names)
        try:
            # Python's own parser, in expression mode: one expression, never a statement (simpleeval's parse
            # would take the first of several); simpleeval evaluates it.
            tree = ast.parse(source.replace("^", "**").strip(), mode="eval").body
        except SyntaxError as exc:
            raise FormulaError(f"calculate_output is not a formula: {exc.msg}") from None
        except (RecursionError, MemoryError, ValueError):
            raise FormulaError("calculate_output is nested too deeply") from None
        if _depth(tree) > MAX_DEPTH:
            raise FormulaError(f"calculate_output is nested too deeply (at most {MAX_DEPTH} levels)")
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED_NODES):
                raise FormulaError(
                    f"calculate_output may not use {type(node).__name__}: only numbers, + - * / ^ "
                    f"and {', '.join(FUNCTIONS)}"
                )
            if isinstance(node, ast.Constant) and (
                isinstance(node.value, bool) or not isinstance(node.value, int | float)
            ):
                raise FormulaError(f"calculate_output may only hold numbers, not {node.value!r}")
            if isinstance(node, ast.Call):
                if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                    raise FormulaError(f"calculate_output calls an unknown function; known: {', '.join(FUNCTIONS)}")
                if node.keywords or not node.args:
                    raise FormulaError(f"{node.func.id}() in calculate_output takes one or more plain arguments")
        called = {n.func for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node not in called and node.id not in known:
                listed = ", ".join(sorted(known)) or "none"
                raise FormulaError(f"calculate_output uses '{node.id}', which names no grader (graders: {listed})")
        return cls(source, known, tree)

    def evaluate(self, scores: Mapping[str, float]) -> float:
        """The formula's value for these scores (:class:`FormulaValueError` when it has no finite one)."""
        evaluator = SimpleEval(functions=FUNCTIONS, names=dict(scores))
        try:
            value = evaluator.eval(self.source, previously_parsed=self._tree)
        except (ArithmeticError, ValueError, TypeError, InvalidExpression) as exc:
            raise FormulaValueError(f"calculate_output has no value for {dict(scores)}: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise FormulaValueError(f"calculate_output gave {value!r} for {dict(scores)}, not a finite number")
        return float(value)
