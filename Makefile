# One target per habit; CI runs the same ones (.ci/run).
UV ?= uv
PYTEST = $(UV) run pytest

.PHONY: install test test-unit lint format typecheck generate check-generated schemas alert-rules demo emulator worker bench bench-follow bench-console soak hostile check-deploy ci

install:
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet 'uv==0.13.8'
	$(UV) sync --locked --all-groups

test: install
	$(PYTEST) -q -m "not soak"

test-unit: install
	$(PYTEST) -q tests/unit

lint:
	$(UV) run ruff check .
	$(UV) run ruff format --check .

format:
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

typecheck:
	$(UV) run mypy dispatcher bench

generate:
	$(UV) run python tools/generate_params.py

check-generated:
	$(UV) run python tools/generate_params.py --check

schemas:
	$(UV) run python tools/write_schemas.py

# deploy/prometheus-rules.yaml from the PrometheusRule in deploy/components/monitoring (their one source).
alert-rules:
	$(UV) run python tools/write_alert_rules.py

demo: install
	$(UV) run python tools/demo.py

emulator:
	$(UV) run dispatcher emulator

worker:
	AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
		$(UV) run dispatcher run

bench: install
	$(UV) run python -m bench

# Only the follow benchmark: 10,000 followed jobs, Describe limited to 50/s per operation (a few minutes).
bench-follow: install
	$(UV) run python -m bench --only follow

# Only the console's dead-letter page: response times with 100,000 dead letters (a few minutes).
bench-console: install
	$(UV) run python -m bench.console

soak: install
	$(PYTEST) -q -m soak -p no:randomly

# >= 1,000 generated hostile messages among valid jobs (HOSTILE_MESSAGES, HOSTILE_SEED to change them).
hostile: install
	$(PYTEST) -q -m "hostile and soak" -p no:randomly tests/hostile

check-deploy:
	bash .ci/check-deploy

ci: lint typecheck check-generated test check-deploy
