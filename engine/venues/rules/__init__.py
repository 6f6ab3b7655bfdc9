"""Exchange rule sets: data files (source, as-of date) assembled into one frozen `RuleSet` record."""

from xmargin.venues.rules.ruleset import (AutoExchange, Bracket, BracketTable, LiquidationRules, RuleSet,
                                         builtin_rule_names, load_rules)

__all__ = ["AutoExchange", "Bracket", "BracketTable", "LiquidationRules", "RuleSet", "builtin_rule_names", "load_rules"]
