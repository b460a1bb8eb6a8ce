"""HTTP route templates as the Functions host understands them (ASP.NET Core syntax):
literal segments, `{name}`, optional `{name?}`, catch-all `{*rest}` and constraints such as `{id:int}`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

_PARAM = re.compile(r"\{([^{}]+)\}")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class RouteError(ValueError):
    pass


def _integer(bounds: tuple[int, int]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        return re.fullmatch(r"-?\d+", value) is not None and bounds[0] <= int(value) <= bounds[1]
    return check


def _number(value: str) -> bool:
    try:
        float(value)
        return value.strip().lower() not in ("nan", "inf", "-inf", "infinity", "-infinity")
    except ValueError:
        return False


def _guid(value: str) -> bool:
    try:
        uuid.UUID(value.strip("{}()"))
        return True
    except ValueError:
        return False


def _datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
        return True
    except ValueError:
        return False


_SIMPLE: dict[str, Callable[[str], bool]] = {
    "int": _integer(_INT32),
    "long": _integer(_INT64),
    "bool": lambda v: v.lower() in ("true", "false"),
    "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
    "guid": _guid,
    "double": _number,
    "float": _number,
    "decimal": _number,
    "datetime": _datetime,
}


def _constraint(text: str) -> Callable[[str], bool]:
    if text.lower() in _SIMPLE:
        return _SIMPLE[text.lower()]
    m = re.fullmatch(r"(\w+)\((.*)\)", text, re.S)
    if not m:
        raise RouteError(f"unknown route constraint '{text}'")
    kind, arg = m.group(1).lower(), m.group(2)
    try:
        if kind == "regex":
            pattern = re.compile(arg, re.IGNORECASE)
            return lambda v: pattern.search(v) is not None
        nums = [int(a) for a in arg.split(",")]
    except (ValueError, re.error) as exc:
        raise RouteError(f"bad route constraint '{text}': {exc}") from None
    if kind == "min" and len(nums) == 1:
        return lambda v: _INT64_OK(v) and int(v) >= nums[0]
    if kind == "max" and len(nums) == 1:
        return lambda v: _INT64_OK(v) and int(v) <= nums[0]
    if kind == "range" and len(nums) == 2:
        return lambda v: _INT64_OK(v) and nums[0] <= int(v) <= nums[1]
    if kind == "length" and len(nums) == 1:
        return lambda v: len(v) == nums[0]
    if kind == "length" and len(nums) == 2:
        return lambda v: nums[0] <= len(v) <= nums[1]
    if kind == "minlength" and len(nums) == 1:
        return lambda v: len(v) >= nums[0]
    if kind == "maxlength" and len(nums) == 1:
        return lambda v: len(v) <= nums[0]
    raise RouteError(f"unknown route constraint '{text}'")


_INT64_OK = _integer(_INT64)


@dataclass
class _Param:
    name: str
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    checks: list[Callable[[str], bool]] = field(default_factory=list)


def _parse_param(body: str) -> _Param:
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    default = None
    if "=" in body:
        body, default = body.split("=", 1)
    optional = body.endswith("?")
    body = body.rstrip("?")
    name, *constraints = body.split(":")
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise RouteError(f"bad route parameter name '{name}'")
    return _Param(name, optional or catch_all or default is not None, catch_all, default,
                  [_constraint(c) for c in constraints])


@dataclass
class RouteTemplate:
    template: str
    regex: re.Pattern = field(repr=False)
    params: list[_Param] = field(repr=False)
    rank: tuple = field(repr=False)

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for a path (already stripped of the route prefix), or None."""
        m = self.regex.fullmatch("/" + path.strip("/") if path.strip("/") else "")
        if not m:
            return None
        values: dict[str, str] = {}
        for p in self.params:
            value = m.group(p.name)
            if value is None or value == "":
                if p.default is not None:
                    values[p.name] = p.default
                continue
            if not all(check(value) for check in p.checks):
                return None
            values[p.name] = value
        return values


def compile_route(template: str) -> RouteTemplate:
    text = template.strip().strip("/")
    pattern = ""
    params: list[_Param] = []
    rank: list[int] = []
    seen_optional = False
    segments = text.split("/") if text else []
    for i, segment in enumerate(segments):
        if not segment:
            raise RouteError(f"route '{template}' has an empty segment")
        pieces = _PARAM.split(segment)  # literal, param, literal, param, ...
        seg_params = [_parse_param(body) for body in pieces[1::2]]
        if any(p.catch_all for p in seg_params) and (i != len(segments) - 1 or len(pieces) != 3 or pieces[0]
                                                     or pieces[2]):
            raise RouteError(f"catch-all parameter must be the whole last segment in '{template}'")
        if "{" in "".join(pieces[0::2]) or "}" in "".join(pieces[0::2]):
            raise RouteError(f"unbalanced braces in route '{template}'")
        body = ""
        for j, piece in enumerate(pieces):
            if j % 2 == 0:
                body += re.escape(piece)
            else:
                p = seg_params[j // 2]
                if any(q.name == p.name for q in params):
                    raise RouteError(f"route parameter '{p.name}' appears twice in '{template}'")
                params.append(p)
                body += f"(?P<{p.name}>.*)" if p.catch_all else f"(?P<{p.name}>[^/]+?)"
        whole_optional = len(pieces) == 3 and not pieces[0] and not pieces[2] and seg_params[0].optional
        if whole_optional:
            pattern += f"(?:/{body})?"
            seen_optional = True
        else:
            if any(p.optional for p in seg_params):
                raise RouteError(f"optional parameter must be the whole segment in '{template}'")
            if seen_optional:
                raise RouteError(f"only trailing segments can be optional in '{template}'")
            pattern += f"/{body}"
        if len(pieces) == 1:
            rank.append(0)
        elif seg_params[0].catch_all:
            rank.append(4)
        elif whole_optional:
            rank.append(3)
        else:
            rank.append(1 if any(p.checks for p in seg_params) else 2)
    return RouteTemplate(template=text, regex=re.compile(pattern, re.IGNORECASE), params=params, rank=tuple(rank))
