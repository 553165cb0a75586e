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

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mesaopt.model.errors import ScenarioError, clean_message
from mesaopt.model.scenario import Scenario

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
    """
    data, source = load_raw(path)
    for assignment in overrides or []:
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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError("scenario", "file not found", source) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError("scenario", f"cannot read: {err}", source) from None
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError("scenario", f"not valid TOML: {err}", source) from None


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
            if not part.isdigit() or int(part) >= len(node):
                raise ScenarioError(here, f"no item {part} (the list has {len(node)})")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if part not in node:
                    node[part] = [] if part in ("channels", "principals", "regimes") else {}
                node = node[part]
        else:
            raise ScenarioError(here, "cannot set a key inside a plain value")


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
        msg = "unknown key"
    value = first.get("input")
    if first["type"] not in ("extra_forbidden", "missing") and not isinstance(value, dict | list):
        msg = f"{msg} (got {value!r})"
    return ScenarioError(".".join(loc) or "scenario", msg)
