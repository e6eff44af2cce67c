"""Benchmark drivers, beside the package rather than inside it: each module measures one thing,
prints a table and writes JSON (and a plot where people would rather look). `cryptorec bench
NAME` runs the module `DRIVERS[NAME]` names; benchmarks/README.md says which command wrote
each file in results/.

A driver module has `DRIVER` (a `driver.Driver`: its help line and which of --dataset, --json
and --plot it takes), `add_arguments(parser)` for its own arguments and `main(args) -> exit code`.
Plots need the optional `plot` extra (matplotlib): `pip install 'cryptorec[plot]'`.
"""

DRIVERS = {
    "accuracy": "cryptorec.benchmarks.accuracy",
    "compression": "cryptorec.benchmarks.compression",
    "he": "cryptorec.benchmarks.he",
    "ranking": "cryptorec.benchmarks.ranking",
    "service": "cryptorec.benchmarks.service",
    "catalogue": "cryptorec.benchmarks.catalogue",
    "load": "cryptorec.benchmarks.load",
    "memory": "cryptorec.benchmarks.evaluator_memory",
    "paillier-methods": "cryptorec.benchmarks.paillier_methods",
    "page": "cryptorec.benchmarks.page",
}
