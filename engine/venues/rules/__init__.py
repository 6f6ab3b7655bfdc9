"""Exchange rule sets: data files (source, as-of date) assembled into one frozen `RuleSet` record."""

from xmargin.venues.rules.ruleset import Bracket, BracketTable, LiquidationRules, RuleSet, builtin_rule_names, load_rules

__all__ = ["Bracket", "BracketTable", "LiquidationRules", "RuleSet", "builtin_rule_names", "load_rules"]
