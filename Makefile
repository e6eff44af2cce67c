# The two commands README.md promises, plus the pieces they are made of.
.PHONY: install demo demo-web test lint pytest

install:
	./scripts/install.sh

# Main job: train a model, start the key, model and evaluator services on local ports (embedded
# store, no Redis), and get encrypted recommendations for a held-out MovieLens user.
demo: install
	.venv/bin/cryptorec demo --download

# The same, with the page: prints an address to open; rate movies there (Ctrl-C stops).
demo-web: install
	.venv/bin/cryptorec demo --download --web

# Everything CI checks: lint, types, and the whole test suite (slow and integration included).
test: install lint pytest

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy -p libcryptorec -p cryptorec.services -p cryptorec.benchmarks
	cd web && npx --no-install tsc --noEmit

pytest:
	.venv/bin/python -m pytest
