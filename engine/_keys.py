"""Unknown keys of a user's table (config, rule file): named with the nearest allowed key.

A typo such as `maintenence_rate` must never be read as "not given" and replaced by a default, so
every table at the edges is checked against the keys it may hold."""

from __future__ import annotations

import difflib

from xmargin.errors import RulesError

NOTES = "notes"  # a key for people, allowed in every table of a rule file


def unknown_keys(mapping: dict, allowed) -> str:
    """'' when every key of `mapping` is in `allowed`; else a description of the others, with the
    allowed key each most resembles: "['maintenence_rate'] (did you mean 'maintenance_margin_rate'?)"."""
    allowed = sorted(allowed)
    unknown = sorted(str(key) for key in mapping if key not in allowed)
    if not unknown:
        return ""
    hints = [(key, near[0]) for key in unknown if (near := difflib.get_close_matches(key, allowed, n=1, cutoff=0.6))]
    said = ", ".join(f"'{near}'" if len(unknown) == 1 else f"'{near}' for '{key}'" for key, near in hints)
    return f"{unknown}" + (f" (did you mean {said}?)" if hints else "")


def check_rule_keys(mapping, allowed, where: str, what: str = "keys") -> None:
    """RulesError naming the keys of a rule-file table outside `allowed` (and `notes`)."""
    allowed = {*allowed, NOTES}
    if not isinstance(mapping, dict):
        raise RulesError(f"{where}: expected an object with {sorted(allowed - {NOTES})}, got {mapping!r}.")
    unknown = unknown_keys(mapping, allowed)
    if unknown:
        raise RulesError(f"{where}: unknown {what} {unknown}; allowed: {sorted(allowed)}. Fix the spelling (see "
                         "docs/rules.md); put remarks for people under 'notes'.")
