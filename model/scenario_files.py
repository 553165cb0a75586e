"""Scenario files: loading TOML, ``--set`` overrides, and validation with one-line errors.

The way in to a :class:`~model.scenario.Scenario`: :func:`load_scenario` reads a TOML file (or the
embedded default, ``model/default.toml``), applies command-line overrides
(``--set principals.0.contract.beta=0.3``) to the raw data *before* validation, so they are checked
exactly like the file, and validates it. :func:`validate` turns pydantic's errors into one
:class:`~model.errors.ScenarioError` naming the dotted key and the file; :func:`to_toml_dict` is
the way back, the resolved scenario as plain data for manifests and run ids.

Its neighbour :mod:`model.scenario` holds the schema alone (sections, defaults, cross-field
checks) and knows nothing of files; this module knows nothing of what the keys mean.
"""

from __future__ import annotations

import difflib
import tomllib
import typing
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mesaopt.model.errors import ScenarioError, clean_message
from mesaopt.model.scenario import Scenario
from mesaopt.model.user_files import MAX_SCENARIO_BYTES, expanded_path, read_user_text

#: Deepest nesting of tables and arrays accepted, in a file, a ``--set`` value or the data they
#: make. The deepest a scenario needs is 8 (``[sweep.grid]`` with a dotted key into a pool's
#: ``{values = [...]}``); TOML parsing and validation recurse once or more per level, and Python
#: stops at ~1,000 frames, so a few hundred levels would end in a RecursionError.
MAX_NESTING = 16

# ----------------------------------------------------------------------------------- loading


def load_scenario(path: str | Path | None = None, overrides: list[str] | None = None) -> Scenario:
    """Load, override and validate a scenario.

    Args:
        path: The TOML file, or None for the embedded default.
        overrides: ``dotted.key=value`` assignments, applied in order.

    Returns:
        The validated scenario.

    Raises:
        ScenarioError: On any bad input, naming the key and the file.
    """
    return validate(*load_overridden(path, overrides))


def load_overridden(
    path: str | Path | None, overrides: list[str] | None = None
) -> tuple[dict[str, Any], str]:
    """Read a scenario file (or the embedded default) as raw data with overrides applied.

    Args:
        path: The TOML file, or None for the embedded default.
        overrides: ``dotted.key=value`` assignments, applied in order.

    Returns:
        The raw data (not yet validated) and the name to use in error messages.

    Raises:
        ScenarioError: If the file cannot be read or an override is malformed.
        TypeError: If ``overrides`` is a string, not a list of them (Python callers).
    """
    if isinstance(overrides, str | bytes):
        raise TypeError(f"overrides must be a list of 'key=value' strings, got {overrides!r:.80}")
    assignments = list(overrides or [])  # once: a generator is read a single time
    if not all(isinstance(item, str) for item in assignments):
        raise TypeError(f"overrides must be 'key=value' strings, got {assignments!r:.80}")
    data, source = load_raw(path)
    if path is not None:
        check_file_paths(data, Path(path).parent, source)
    for assignment in assignments:
        key, value = parse_override(assignment)
        try:
            apply_override(data, key, value)
        except ScenarioError as err:
            raise err.with_source(source) from None
    return data, source


def load_raw(path: str | Path | None) -> tuple[dict[str, Any], str]:
    """Read a scenario file (or the embedded default when ``path`` is None) as raw data.

    Args:
        path: The TOML file, or None for the embedded default.

    Returns:
        The raw data and the name to use in error messages.

    Raises:
        ScenarioError: If the file is missing or is not valid TOML.
    """
    if path is None:
        return tomllib.loads(default_text()), "<default scenario>"
    path = Path(path)
    source = str(path)
    text = read_user_text(
        path, key="scenario", what="a scenario file", limit=MAX_SCENARIO_BYTES, source=source
    )
    check_text_nesting(text, "scenario", source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError("scenario", f"not valid TOML: {err}", source) from None
    check_data_nesting(data, source)
    return data, source


def check_text_nesting(text: str, key: str, source: str | None = None) -> None:
    """Refuse TOML text whose arrays and inline tables nest deeper than :data:`MAX_NESTING`.

    Scans brackets outside strings and comments, without recursion, before the (recursive) TOML
    parser sees the text.

    Args:
        text: TOML text (a file, or ``v = <value>`` of an override).
        key: The key to name in the error (``scenario`` or the override's key).
        source: The file, if any.

    Raises:
        ScenarioError: If the nesting is deeper than :data:`MAX_NESTING`.
    """
    depth = 0
    i, size = 0, len(text)
    line = 1
    while i < size:
        char = text[i]
        if char in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else char
            i += len(quote)
            while i < size and text[i : i + len(quote)] != quote:
                if text[i] == "\n":
                    line += 1
                    if len(quote) == 1:
                        break  # an unterminated one-line string: the parser will say so
                i += 2 if quote[0] == '"' and text[i] == "\\" else 1
            i += len(quote)
            continue
        if char == "#":
            while i < size and text[i] != "\n":
                i += 1
            continue
        if char == "\n":
            line += 1
        elif char in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise ScenarioError(
                    key, f"nested deeper than {MAX_NESTING} levels (line {line})", source
                )
        elif char in "]}":
            depth = max(0, depth - 1)
        i += 1


def check_data_nesting(data: Any, source: str | None = None) -> None:
    """Refuse data (tables made by dotted keys included) nested deeper than :data:`MAX_NESTING`.

    Args:
        data: Parsed scenario data.
        source: The file, if any.

    Raises:
        ScenarioError: Naming the first key path that is too deep.
    """
    stack: list[tuple[Any, list[str]]] = [(data, [])]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_NESTING:
            shown = ".".join(path[:4])
            raise ScenarioError(f"{shown}...", f"nested deeper than {MAX_NESTING} levels", source)
        if isinstance(node, dict):
            stack.extend((value, [*path, str(key)]) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, [*path, str(i)]) for i, value in enumerate(node))


def check_file_paths(data: dict[str, Any], folder: Path, source: str) -> None:
    """Refuse edge-list paths in a scenario file that lead outside the file's folder.

    A scenario file may come from someone else; a path in it may only name a file in or below
    its folder (relative paths resolve against it; ``..``, absolute paths and symlinks leading
    out are refused). A path given on the command line (``--set network.path=...`` or
    ``--grid``) is the user's own and is not checked here.

    Args:
        data: Raw data of the file (before overrides).
        folder: The scenario file's folder.
        source: The file, for errors.

    Raises:
        ScenarioError: (key ``network.path`` or ``sweep.grid.network.path``) naming the path.
    """
    network = data.get("network")
    candidates: list[tuple[str, Any]] = []
    if isinstance(network, dict) and "path" in network:
        candidates.append(("network.path", network["path"]))
    sweep = data.get("sweep")
    grid = sweep.get("grid") if isinstance(sweep, dict) else None
    # every entry of the grid as the sweep flattens it, a key written twice included
    for dotted, spec in _grid_entries(grid) if isinstance(grid, dict) else ():
        values = spec if isinstance(spec, list) else [spec]
        if dotted == "network.path":
            # a list of paths, or one string (which a grid may also split at commas: check both)
            split = spec.split(",") if isinstance(spec, str) else []
            candidates.extend(("sweep.grid.network.path", value) for value in [*values, *split])
        elif dotted == "network":  # whole [network] tables swept
            candidates.extend(
                ("sweep.grid.network", value.get("path"))
                for value in values
                if isinstance(value, dict)
            )
    root = folder.resolve()
    for key, value in candidates:
        if not isinstance(value, str) or not value:
            continue  # validation names a wrong type
        try:
            target = (folder / expanded_path(value)).resolve()
        except ValueError as err:
            raise ScenarioError(key, str(err), source) from None
        if not target.is_relative_to(root):
            raise ScenarioError(
                key,
                f"{value[:80]!r} leads outside the scenario's folder; a scenario file may only "
                "name files in or below its folder (give other paths on the command line: "
                "--set network.path=...)",
                source,
            )


def _grid_entries(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted key, value) of a ``[sweep.grid]`` table, nested tables flattened."""
    for key, item in node.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(item, dict):
            yield from _grid_entries(item, dotted)
        else:
            yield dotted, item


def default_text() -> str:
    """Return the TOML text of the embedded default scenario.

    Returns:
        The text of ``model/default.toml`` (the same model as ``scenarios/baseline.toml``).
    """
    return resources.files("mesaopt.model").joinpath("default.toml").read_text(encoding="utf-8")


# --------------------------------------------------------------------------------- overrides


def parse_override(assignment: str) -> tuple[str, Any]:
    """Split ``dotted.key=value`` and parse the value as a TOML literal (bare words are strings).

    Args:
        assignment: The text given to ``--set``.

    Returns:
        The dotted key and the parsed value.

    Raises:
        ScenarioError: If there is no ``=`` or no key.
    """
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ScenarioError(assignment or "--set", "overrides look like dotted.key=value")
    raw = raw.strip()
    if key.count(".") >= MAX_NESTING:
        raise ScenarioError(key[:40] + "...", f"nested deeper than {MAX_NESTING} levels")
    check_text_nesting(raw, key)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_override(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``value`` at the dotted ``key`` of raw scenario data (list items by index).

    Missing tables are created so that validation can name an unknown key; a list index out of
    range is an error.

    Args:
        data: Raw scenario data as parsed from TOML (modified in place).
        key: Dotted path such as ``principals.0.selection.n``.
        value: The new value.

    Raises:
        ScenarioError: If the path runs through a value that is not a table or list, or an index
            is out of range.
    """
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            index = _list_index(node, part, here, by_name=parts[:depth] == ["principals"])
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if part not in node:
                    node[part] = [] if part in ("channels", "principals", "regimes") else {}
                node = node[part]
        else:
            raise ScenarioError(here, "cannot set a key inside a plain value")


def _list_index(items: list[Any], part: str, here: str, *, by_name: bool) -> int:
    """The index a dotted-key part addresses in a list: a number, or a principal's name.

    Args:
        items: The list (raw data).
        part: The key part (``"0"``, or ``"acme"`` for ``principals.acme``).
        here: The dotted key up to this part, for errors.
        by_name: Whether items may be addressed by their ``name`` (principals).

    Returns:
        The index.

    Raises:
        ScenarioError: No such item, or a principal's name that is also a different item's index.
    """
    named = [
        i
        for i, item in enumerate(items)
        if by_name and isinstance(item, dict) and item.get("name") == part
    ]
    if part.isascii() and part.isdigit() and int(part) < len(items):
        if named and named != [int(part)]:
            raise ScenarioError(
                here, f"ambiguous: item {part} and the principal named {part!r} differ"
            )
        return int(part)
    if named:
        return named[0]
    if by_name:
        names = [str(item.get("name")) for item in items if isinstance(item, dict)]
        raise ScenarioError(
            here,
            f"no principal named {part[:40]!r} and no item {part[:40]} "
            f"(principals: {', '.join(names)}; by index 0 to {len(items) - 1})",
        )
    raise ScenarioError(here, f"no item {part[:40]} (the list has {len(items)})")


# -------------------------------------------------------------------------------- validation


def validate(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate raw scenario data.

    Args:
        data: Raw data as parsed from TOML, overrides applied.
        source: Name of the file, for error messages.

    Returns:
        The validated scenario.

    Raises:
        ScenarioError: Naming the first bad key and the file.
    """
    check_data_nesting(data, source)
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise _format_validation_error(err).with_source(source) from None
    except ScenarioError as err:
        raise err.with_source(source) from None


def to_toml_dict(scenario: Scenario) -> dict[str, Any]:
    """Return the fully resolved scenario as plain data (for manifests and run ids).

    Args:
        scenario: A validated scenario.

    Returns:
        JSON-compatible data that :func:`validate` turns back into an equal scenario.
    """
    return scenario.model_dump(mode="json")


_MISMATCH = {
    "int_type",
    "int_parsing",
    "int_from_float",
    "float_type",
    "float_parsing",
    "bool_type",
    "bool_parsing",
    "string_type",
    "literal_error",
    "model_type",
    "model_attributes_type",
    "dict_type",
    "list_type",
}


def _key_of(error: dict[str, Any]) -> list[str]:
    """Dotted-key parts of a pydantic error, without the union-branch tags pydantic adds."""
    parts = []
    for part in error["loc"]:
        text = str(part)
        if "[" in text or "-" in text or (text[:1].isupper() and text.endswith("Config")):
            continue  # a union branch such as "literal['optimal']" or "constrained-int"
        if text in ("int", "float", "str", "bool"):
            continue
        parts.append(text)
    return parts


def _format_validation_error(err: ValidationError) -> ScenarioError:
    """Turn pydantic's most telling error into a one-line ScenarioError naming the dotted key.

    Unions (``beta = 0.3 | "optimal"``, ``capacity = 2 | {values, weights}``) report one error per
    branch: a branch whose *type* fits explains the problem best; if none fits, the branches'
    expectations are joined ("a valid number or 'optimal'").
    """
    errors = err.errors()
    for error in errors:
        original = (error.get("ctx") or {}).get("error")
        if isinstance(original, ScenarioError):
            return original
    ranked = sorted(errors, key=lambda e: (e["type"] in _MISMATCH, -len(_key_of(e))))
    first = ranked[0]
    loc = _key_of(first)
    msg = clean_message(first["msg"])
    if first["type"] == "value_error" and ": " in msg and msg.split(": ", 1)[0].isidentifier():
        sub, msg = msg.split(": ", 1)
        loc.append(sub)
    if first["type"] in _MISMATCH:
        expected = [
            clean_message(e["msg"]).removeprefix("Input should be ")
            for e in errors
            if e["type"] in _MISMATCH and _key_of(e) == loc
        ]
        if len(expected) > 1:
            msg = "Input should be " + " or ".join(dict.fromkeys(expected))
    if first["type"] == "extra_forbidden":
        msg = "unknown key" + _did_you_mean(loc)
    value = first.get("input")
    if first["type"] not in ("extra_forbidden", "missing") and not isinstance(value, dict | list):
        msg = f"{msg} (got {value!r})"
    return ScenarioError(".".join(loc) or "scenario", msg)


def _did_you_mean(loc: list[str]) -> str:
    """``" (did you mean 'x'?)"`` for an unknown key at ``loc``, from the keys allowed there."""
    if not loc:
        return ""
    allowed = _keys_at(loc[:-1])
    close = difflib.get_close_matches(loc[-1], allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _keys_at(path: list[str]) -> list[str]:
    """The keys the schema allows in the table at the dotted ``path`` (list indices skipped)."""
    model: Any = Scenario
    for part in path:
        if part.isascii() and part.isdigit():
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _section_of(field.annotation)
        if model is None:
            return []
    return list(model.model_fields) if _is_model(model) else []


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _section_of(annotation: Any) -> type[BaseModel] | None:
    """The section class inside an annotation (``X``, ``X | None``, ``list[X]``, ``int | X``)."""
    if _is_model(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_of(arg)
        if found is not None:
            return found
    return None
