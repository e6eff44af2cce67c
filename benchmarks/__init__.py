"""Benchmark drivers, beside the package rather than inside it: each module measures one thing,
prints a table and writes JSON (and a plot where people would rather look). `cryptorec bench
NAME` runs the module `DRIVERS[NAME]` names; benchmarks/README.md says which command wrote
each file in results/.

A driver module has `HELP` (one line), `add_arguments(parser)` and `main(args) -> exit code`.
Plots need the optional `plot` extra (matplotlib): `pip install 'cryptorec[plot]'`.
"""

DRIVERS = {
    "accuracy": "benchmarks.accuracy",
    "compression": "benchmarks.compression",
    "he": "benchmarks.he",
    "service": "benchmarks.service",
    "load": "benchmarks.load",
    "memory": "benchmarks.evaluator_memory",
    "paillier-methods": "benchmarks.paillier_methods",
}
