"""Pair strategies: each module declares `STRATEGY = Strategy(name, options, build, ...)`
(curate.pairs.strategy); curate.pairs.registry collects them for the run config's `strategy`
names. Shared by every strategy: the pairing rule (rule.py) and the pair rows (rows.py,
schemas/pairs.toml). This package imports nothing, so a strategy module never loads the registry.
"""
