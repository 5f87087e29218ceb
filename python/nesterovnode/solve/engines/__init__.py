"""Solver engines: one module each (``rk`` a package). ``base`` states the protocol every
engine follows; ``external`` is the bridge for engines that integrate NumPy arrays."""
