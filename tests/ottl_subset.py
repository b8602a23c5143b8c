"""A small OTTL interpreter for exactly the subset llmtally's collector configs use, for tests.

No real OpenTelemetry Collector can run here, so this stands in for one: it parses statements with
OTTL's lexical rules (Go-style string unquoting, signed int/float literals, ``nil``/``not``/``and``/``or``),
rejects anything outside the subset, and evaluates with the collector's semantics where they matter for
money: int64 and float64 never mix in arithmetic (an error, as in OTTL), integer division truncates,
comparisons follow OTTL's rules (nil equals only nil; ordered comparisons with nil or across types are
false; int vs float compare as float), ``set`` with a nil value does nothing, ``and``/``or`` short-circuit,
regexes are RE2 (``\\z``; ASCII classes), ``replace_pattern`` replaces every match with Go's ``$1``
expansion, and ``$$`` in the YAML is the config loader's escape for ``$``.

Paths: ``span.attributes[...]``, ``span.cache[...]``, ``span.start_time_unix_nano`` with the transform
processor's context prefix; ``attributes[...]``, ``start_time_unix_nano``, ``end_time_unix_nano``,
``instrumentation_scope.name`` without it (the signaltometrics connector's span context); ``metric.name``
and ``metric.is_monotonic`` for metric statements; ``resource.attributes[...]`` for resource statements;
``event_name`` for log records.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

Value = Any
Env = dict[str, Any]


class OttlError(Exception):
    """A statement OTTL would reject at startup (syntax, unknown function) or fail at run time."""


# --- lexer (OTTL's grammar.go rules, in their order) -------------------------------------------------
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<float>(?:\d+\.\d*|\d*\.\d+))
  | (?P<int>\d+)
  | (?P<string>"(?:\\.|[^\\"])*")
  | (?P<op>==|!=|>=|<=|>|<|\+|-|\*|/)
  | (?P<punct>[()\[\],.])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.X)
_KEYWORDS = {"nil", "not", "or", "and", "where", "true", "false"}
_GO_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def unquote(literal: str) -> str:
    """Go strconv.Unquote for a double-quoted literal (the escapes OTTL sees); others are an error."""
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt in _GO_ESCAPES:
            out.append(_GO_ESCAPES[nxt])
            i += 2
        elif nxt == "x":
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        else:
            raise OttlError(f"invalid escape \\{nxt} in {literal}: Go's Unquote rejects it")
    return "".join(out)


def tokenize(text: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise OttlError(f"unexpected character {text[pos]!r} at {pos} in {text[:80]}...")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
        pos = m.end()
    return out


# --- config-loader escape ----------------------------------------------------------------------------
def confmap_unescape(text: str) -> str:
    """What the collector's config loader leaves of a string: ``$$`` -> ``$``; any other ``$`` would be
    an environment reference, which a statement must not contain."""
    if re.search(r"(?<!\$)\$(?!\$)", text.replace("$$", "")):
        raise OttlError(f"bare $ in {text[:80]}...: the collector would expand it")
    return text.replace("$$", "$")


def go_regex(pattern: str) -> re.Pattern[str]:
    """An RE2 pattern as a Python one (same meaning for the constructs used)."""
    for unsupported in ("(?=", "(?!", "(?<=", "(?<!"):
        if unsupported in pattern:
            raise OttlError(f"RE2 has no look-around: {pattern}")
    if re.search(r"\\[1-9]", pattern):
        raise OttlError(f"RE2 has no back-references: {pattern}")
    return _compile(pattern)


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.replace("\\z", "\\Z"), re.ASCII)


def go_expand(template: str) -> str:
    """Go's regexp template ($1, ${1}) as a Python re.sub template."""
    out = template.replace("\\", "\\\\")
    out = re.sub(r"\$\{(\w+)\}", r"\\g<\1>", out)
    return re.sub(r"\$(\d+)", r"\\g<\1>", out)


# --- AST as closures -------------------------------------------------------------------------------
Getter = Callable[[Env], Value]
Cond = Callable[[Env], bool]


@dataclass
class Parser:
    tokens: list[tuple[str, str]]
    context: str | None  # "span" for transform statements; None for the connector's unprefixed paths
    i: int = 0
    functions: set[str] = field(default_factory=set)

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        k, v = self.peek()
        if (value is not None and v != value) or (kind is not None and k != kind):
            raise OttlError(f"expected {value or kind}, got {v!r} at token {self.i}")
        self.i += 1
        return v

    # statement := editor(args) [where bool]
    def statement(self) -> Callable[[Env], None]:
        name = self.take(kind="ident")
        if not name[0].islower() or name in _KEYWORDS:
            raise OttlError(f"an editor name starts with a lower-case letter: {name}")
        self.functions.add(name)
        self.take("(")
        args = self.args()
        cond: Cond | None = None
        if self.peek()[1] == "where":
            self.take("where")
            cond = self.boolean()
        if self.peek()[0] != "eof":
            raise OttlError(f"trailing tokens after statement: {self.peek()}")
        return _editor(name, args, cond)

    def args(self) -> list[Any]:
        out = []
        if self.peek()[1] != ")":
            out.append(self.arg())
            while self.peek()[1] == ",":
                self.take(",")
                out.append(self.arg())
        self.take(")")
        return out

    def arg(self) -> Any:
        start = self.i
        getter = self.value()
        bare = getattr(getter, "path", None)
        if bare is not None and self.i - start == bare.tokens:
            return ("path", bare)  # a path on its own: a target an editor may write
        return ("value", getter)

    def value_expression(self) -> Getter:
        getter = self.value()
        if self.peek()[0] != "eof":
            raise OttlError(f"trailing tokens after value: {self.peek()}")
        return getter

    def condition(self) -> Cond:
        cond = self.boolean()
        if self.peek()[0] != "eof":
            raise OttlError(f"trailing tokens after condition: {self.peek()}")
        return cond

    # boolean := term (or term)* ; term := factor (and factor)*
    def boolean(self) -> Cond:
        terms = [self.term()]
        while self.peek()[1] == "or":
            self.take("or")
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else (lambda env: any(t(env) for t in terms))

    def term(self) -> Cond:
        factors = [self.factor()]
        while self.peek()[1] == "and":
            self.take("and")
            factors.append(self.factor())
        return factors[0] if len(factors) == 1 else (lambda env: all(f(env) for f in factors))

    def factor(self) -> Cond:
        v = self.peek()[1]
        if v == "not":
            self.take("not")
            inner = self.factor()
            return lambda env: not inner(env)
        if v == "(":
            self.take("(")
            inner = self.boolean()
            self.take(")")
            return inner
        if v in ("true", "false"):
            self.take()
            const = v == "true"
            return lambda env: const
        left = self.value()
        op = self.peek()[1]
        if op in ("==", "!=", ">", "<", ">=", "<="):
            self.take()
            right = self.value()
            return lambda env: compare(left(env), right(env), op)
        # a converter returning a bool
        def as_bool(env: Env) -> bool:
            result = left(env)
            if not isinstance(result, bool):
                raise OttlError("a boolean converter did not return a bool")
            return result
        return as_bool

    # value := math over operands
    def value(self) -> Getter:
        return self.sum()

    def sum(self) -> Getter:
        left = self.product()
        while self.peek()[1] in ("+", "-"):
            op = self.take()
            right = self.product()
            left = _math(left, right, op)
        return left

    def product(self) -> Getter:
        left = self.operand()
        while self.peek()[1] in ("*", "/"):
            op = self.take()
            right = self.operand()
            left = _math(left, right, op)
        return left

    def operand(self) -> Getter:
        k, v = self.peek()
        if v == "(":
            self.take("(")
            inner = self.sum()
            self.take(")")
            return inner
        if v == "-" and self.peek(1)[0] in ("int", "float"):
            self.take("-")
            kind, num = self.peek()
            self.take()
            const: Value = -int(num) if kind == "int" else -float(num)
            return lambda env: const
        if k == "int":
            self.take()
            ival = int(v)
            return lambda env: ival
        if k == "float":
            self.take()
            fval = float(v)  # correctly rounded, as Go's ParseFloat
            return lambda env: fval
        if k == "string":
            self.take()
            sval = unquote(v)
            return lambda env: sval
        if v == "nil":
            self.take()
            return lambda env: None
        if v in ("true", "false"):
            self.take()
            bval = v == "true"
            return lambda env: bval
        if v == "[":
            self.take("[")
            items: list[Getter] = []
            if self.peek()[1] != "]":
                items.append(self.value())
                while self.peek()[1] == ",":
                    self.take(",")
                    items.append(self.value())
            self.take("]")
            return lambda env: [item(env) for item in items]
        if k == "ident" and v[0].isupper():
            return self.converter()
        if k == "ident" and v not in _KEYWORDS:
            start = self.i
            path = self.path()
            path.tokens = self.i - start

            def get(env: Env) -> Value:
                return path.get(env)
            get.path = path  # type: ignore[attr-defined]
            return get
        raise OttlError(f"unexpected {v!r}")

    def converter(self) -> Getter:
        name = self.take(kind="ident")
        self.functions.add(name)
        self.take("(")
        args = [a if a[0] == "value" else ("value", a[1].get) for a in self.args()]
        getters = [a[1] for a in args]
        keys = self.keys()
        fn = _CONVERTERS.get(name)
        if fn is None:
            raise OttlError(f"converter {name} is not in the subset")
        _check_arity(name, len(getters))

        def call(env: Env) -> Value:
            result = fn(*[g(env) for g in getters])
            for key in keys:
                if isinstance(result, Mapping):
                    result = result.get(key)
                else:
                    raise OttlError(f"{name}(...) result cannot be indexed by {key!r}")
            return result
        return call

    def keys(self) -> list[str]:
        out = []
        while self.peek()[1] == "[":
            self.take("[")
            out.append(unquote(self.take(kind="string")))
            self.take("]")
        return out

    def path(self) -> Path:
        parts = [self.take(kind="ident")]
        while self.peek()[1] == ".":
            self.take(".")
            parts.append(self.take(kind="ident"))
        keys = self.keys()
        return Path.resolve(parts, keys, self.context)


@dataclass
class Path:
    field: str  # attributes | cache | start_time_unix_nano | end_time_unix_nano | scope_name | ...
    key: str | None
    tokens: int = 0

    @staticmethod
    def resolve(parts: list[str], keys: list[str], context: str | None) -> Path:
        if context is not None:
            if parts[0] != context:
                raise OttlError(f"path {'.'.join(parts)} lacks the {context}. context prefix")
            parts = parts[1:]
        name = ".".join(parts)
        allowed = {"attributes": 1, "cache": 1, "start_time_unix_nano": 0, "end_time_unix_nano": 0,
                   "instrumentation_scope.name": 0, "name": 0, "is_monotonic": 0, "event_name": 0}
        if name not in allowed or len(keys) != allowed[name]:
            raise OttlError(f"path {name}{keys} is not in the subset")
        if name == "cache" and context is None:
            raise OttlError("cache is only used with a context prefix here")
        return Path(name, keys[0] if keys else None)

    def get(self, env: Env) -> Value:
        if self.key is None:
            return env[self.field]
        return env[self.field].get(self.key)

    def set(self, env: Env, value: Value) -> None:
        if self.key is None:
            if self.field != "is_monotonic":
                raise OttlError(f"{self.field} is read-only in this subset")
            env[self.field] = value
        else:
            env[self.field][self.key] = value


# --- semantics ---------------------------------------------------------------------------------------
def _is_int(v: Value) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _math(left: Getter, right: Getter, op: str) -> Getter:
    def run(env: Env) -> Value:
        a, b = left(env), right(env)
        if _is_int(a) and _is_int(b):
            if op == "/":
                if b == 0:
                    raise OttlError("division by zero")
                q = abs(a) // abs(b)
                return q if (a >= 0) == (b > 0) else -q  # Go truncates toward zero
            result = a + b if op == "+" else a - b if op == "-" else a * b
            if not -(2**63) <= result < 2**63:
                raise OttlError("int64 overflow")
            return result
        if isinstance(a, float) and isinstance(b, float):
            if op == "/" and b == 0.0:
                raise OttlError("division by zero")
            return a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b
        raise OttlError(f"math on {type(a).__name__} and {type(b).__name__}: OTTL does not mix them")
    return run


def compare(a: Value, b: Value, op: str) -> bool:
    if a is None or b is None:
        same = a is None and b is None
        return same if op == "==" else (not same) if op == "!=" else False
    if isinstance(a, bool) or isinstance(b, bool):
        if not (isinstance(a, bool) and isinstance(b, bool)):
            return op == "!="
    elif (_is_int(a) or isinstance(a, float)) and (_is_int(b) or isinstance(b, float)):
        if type(a) is not type(b):
            a, b = float(a), float(b)
    elif type(a) is not type(b):
        return op == "!="
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if isinstance(a, (dict, list)):
        return False
    if isinstance(a, str):  # Go compares strings byte-wise
        a, b = a.encode(), b.encode()
    return bool(a > b if op == ">" else a < b if op == "<" else a >= b if op == ">=" else a <= b)


def _double(v: Value) -> Value:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if _is_int(v):
        return float(v)
    if isinstance(v, float):
        return v
    if isinstance(v, str):
        try:
            return float(v.replace("_", "x")) if v.strip() == v else None
        except ValueError:
            return None
    return None


def _int(v: Value) -> Value:
    if isinstance(v, bool):
        return 1 if v else 0
    if _is_int(v):
        return v
    if isinstance(v, float):
        return int(v) if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            return int(v, 10)
        except ValueError:
            return None
    return None


def _as_text(v: Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _is_match(target: Value, pattern: Value) -> bool:
    if target is None:
        return False
    return go_regex(pattern).search(_as_text(target)) is not None


def _convert_case(target: Value, case: Value) -> Value:
    if not isinstance(target, str):
        raise OttlError("ConvertCase needs a string")
    if case != "lower":
        raise OttlError(f"ConvertCase {case} is not in the subset")
    return target.lower()


def _concat(values: Value, delimiter: Value) -> Value:
    # As OTTL's Concat: a nil value is written as "<nil>", between delimiters like any other.
    return delimiter.join("<nil>" if v is None else _as_text(v) for v in values if not isinstance(v, (dict, list)))


def _extract_patterns(target: Value, pattern: Value) -> Value:
    if not isinstance(target, str):
        raise OttlError("ExtractPatterns needs a string")
    regex = go_regex(pattern)
    if not regex.groupindex:
        raise OttlError("ExtractPatterns needs a named group")
    m = regex.search(target)
    return {} if m is None else {k: (v or "") for k, v in m.groupdict().items()}


_CONVERTERS: dict[str, Callable[..., Value]] = {
    "Double": _double,
    "Int": _int,
    "IsString": lambda v: isinstance(v, str),
    "IsInt": _is_int,
    "IsDouble": lambda v: isinstance(v, float),
    "IsMatch": _is_match,
    "ConvertCase": _convert_case,
    "Concat": _concat,
    "ExtractPatterns": _extract_patterns,
    "AdjustedCount": lambda: 1.0,  # a span without a sampling threshold counts once
}
_ARITY = {"Double": 1, "Int": 1, "IsString": 1, "IsInt": 1, "IsDouble": 1, "IsMatch": 2, "ConvertCase": 2,
          "Concat": 2, "ExtractPatterns": 2, "AdjustedCount": 0}


def _check_arity(name: str, n: int) -> None:
    if _ARITY[name] != n:
        raise OttlError(f"{name} takes {_ARITY[name]} arguments, got {n}")


def _editor(name: str, args: list[Any], cond: Cond | None) -> Callable[[Env], None]:
    def value_of(arg: Any) -> Getter:
        return arg[1] if arg[0] == "value" else arg[1].get

    if name == "set":
        if len(args) != 2 or args[0][0] != "path":
            raise OttlError("set(path, value)")
        target, value = args[0][1], value_of(args[1])

        def run_set(env: Env) -> None:
            if cond is None or cond(env):
                v = value(env)
                if v is not None:  # set with a nil value does nothing
                    target.set(env, v)
        return run_set
    if name == "replace_pattern":
        if len(args) != 3 or args[0][0] != "path":
            raise OttlError("replace_pattern(path, regex, replacement)")
        target, pattern, replacement = args[0][1], value_of(args[1]), value_of(args[2])

        def run_replace(env: Env) -> None:
            if cond is None or cond(env):
                current = target.get(env)
                if isinstance(current, str):
                    regex = go_regex(pattern(env))
                    target.set(env, regex.sub(go_expand(replacement(env)), current))
        return run_replace
    raise OttlError(f"editor {name} is not in the subset")


# --- public helpers ----------------------------------------------------------------------------------
@cache
def parse_statement(text: str, context: str | None = "span") -> Callable[[Env], None]:
    return Parser(tokenize(confmap_unescape(text)), context).statement()


@cache
def parse_condition(text: str, context: str | None = "span") -> Cond:
    return Parser(tokenize(confmap_unescape(text)), context).condition()


@cache
def parse_value(text: str, context: str | None = None) -> Getter:
    return Parser(tokenize(confmap_unescape(text)), context).value_expression()


def span_env(attributes: Mapping[str, Value], start_ns: int, end_ns: int | None = None,
             scope: str = "app") -> Env:
    return {"attributes": dict(attributes), "cache": {}, "start_time_unix_nano": start_ns,
            "end_time_unix_nano": end_ns if end_ns is not None else start_ns + 1_000_000_000,
            "instrumentation_scope.name": scope}


def run_group(conditions: list[str], statements: list[str], env: Env) -> bool:
    """One transform-processor statement group on one span, with a fresh cache; raises on any
    statement error (the config would log it). Returns whether the group's conditions held."""
    env["cache"] = {}
    if conditions and not any(parse_condition(c)(env) for c in conditions):
        return False
    for text in statements:
        parse_statement(text)(env)
    return True
