"""Turn validation failures into the one located line users see (exit status 2)."""

from __future__ import annotations

import re

from pydantic import ValidationError

from simulator.errors import ConfigError, TrainsimInputError

__all__ = ["ConfigError", "TrainsimInputError", "describe"]


def _short(value: object, limit: int = 60) -> str:
    """The value as typed, bounded: ``reprlib`` never expands a YAML alias bomb to print it."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlevel, r.maxdict, r.maxlist = limit, limit, 3, 4, 4
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _near(key: str) -> str | None:
    """The config key spelled most like ``key`` (``difflib``), if one is close."""
    import difflib

    from .models import Config

    return next(iter(difflib.get_close_matches(key, _key_names(Config), n=1, cutoff=0.75)), None)


def _key_names(model, seen=None) -> list[str]:
    from pydantic import BaseModel

    seen = set() if seen is None else seen
    names = []
    for name, field in model.model_fields.items():
        names.append(name)
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in seen:
                seen.add(arg)
                names += _key_names(arg, seen)
    return sorted(set(names))


_BRANCHES = {"str", "int", "float", "bool", "dict", "list", "tuple", "none", "literal"}


def _loc(loc: tuple) -> list[str]:
    """The user's dotted path: union branches (``str``, a model's class name, a topology's tag) dropped."""
    out: list[str] = []
    for i, part in enumerate(loc):
        text = str(part)
        branch = (text in _BRANCHES or text[:1].isupper() or "[" in text
                  or (i > 0 and str(loc[i - 1]) == "topology" and text.isidentifier()))
        if not branch:
            out.append(text)
    return out


_WORDING = {  # pydantic's error types in the words of a config file
    "int_type": "expected a whole number", "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number", "float_parsing": "expected a number",
    "bool_type": "expected true or false", "bool_parsing": "expected true or false",
    "string_type": "expected text", "dict_type": "expected a mapping (key: value entries)",
    "model_type": "expected a mapping (key: value entries)",
    "model_attributes_type": "expected a mapping (key: value entries)",
    "list_type": "expected a list, e.g. [1, 2]", "tuple_type": "expected a list, e.g. [1, 2]",
    "missing": "required, but missing", "finite_number": "expected a finite number",
}


def _words(e: dict) -> str:
    """The message of one pydantic error without pydantic's wording ("Input should be a valid ...")."""
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] in _WORDING:
        return _WORDING[e["type"]]
    if e["type"] == "union_tag_invalid":
        import difflib

        ctx = e.get("ctx", {})
        tags = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",")]
        near = difflib.get_close_matches(str(ctx.get("tag")), tags, n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        return f"unknown {ctx.get('discriminator', 'kind').strip(chr(39))} {ctx.get('tag')!r}{hint}; expected one " \
               f"of {', '.join(tags)}"
    msg = re.sub(r" or instance of \w+", "", msg)
    return re.sub(r"^Input should be ", "expected ", msg)


def describe(err: ValidationError, source: str, blame=None) -> str:
    """One line for the most specific error: ``source: dotted.path: message (got value)``.

    Of a union's failures (``workload.model`` is a preset name or a layer list) the deepest one is
    the user's mistake, not "should be a valid string".
    """
    errors = err.errors()
    e = max(errors, key=lambda x: (len(x["loc"]), -errors.index(x)))
    where = ".".join(_loc(e["loc"]))
    msg = _words(e)
    whole_section = isinstance(e.get("input"), dict)  # a cross-key check: the message names the keys
    key = re.match(r"(\w+): ", msg)
    named_key = key and (key.group(1) in e["input"] or msg[key.end():].startswith("required, but missing"))
    if whole_section and named_key:   # "iterations: expected ..." from a section check
        where = f"{where}.{key.group(1)}" if where else key.group(1)
        msg = msg[key.end():]
    named = blame(where) if blame is not None else None
    if named:                                   # the value came from a --set: name it, not the file
        source = named
        if named == f"--set {where}":
            where = ""
    if e["type"] == "extra_forbidden":
        near = _near(str(e["loc"][-1])) if e["loc"] else None
        msg = f"unknown key (did you mean {near}?)" if near else "unknown key (check the spelling; see docs/config.md)"
    got = "" if e["type"] == "missing" or whole_section else f" (got {_short(e.get('input'))})"
    if not where:  # a check across sections words its message as "key: what was expected"
        return f"{source}: {msg}{got}"
    return f"{source}: {where}: {msg}{got}"
