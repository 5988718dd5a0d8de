# One entry point per thing a developer or CI does; each target is a script so that
# the logic lives in one place and can be read on its own.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ROLE ?= operator
CUSTOMER_ID ?=

.PHONY: help run demo test bench lint fmt proto-lint deploy-check token build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

build: ## compile every crate (debug)
	cargo build --workspace --all-targets

run: ## start Postgres/Redis if needed, then the four services on 50051-50054 (Ctrl-C stops)
	scripts/run.sh

demo: ## the portfolio simulator against `make run`'s stack (starts one if none): DEMO_CUSTOMERS, DEMO_MONTHS, DEMO_SEED; report in demo-report/
	scripts/demo.sh

test: ## the whole suite against real Postgres and Redis, as CI runs it
	scripts/test.sh

bench: ## run the load generator scenarios and write docs/benchmarks.md
	scripts/bench.sh

lint: ## rustfmt, clippy (-D warnings) and buf lint
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/proto-lint.sh

fmt: ## format the Rust code
	cargo fmt --all

proto-lint: ## buf lint (STANDARD) on proto/
	scripts/proto-lint.sh

deploy-check: ## render every kustomize overlay, validate it and run checkov
	deploy/check.sh

token: ## mint a dev JWT: make token ROLE=operator|service|customer [CUSTOMER_ID=...]
	@scripts/token.sh "$(ROLE)" "$(CUSTOMER_ID)"

.PHONY: train-model
train-model: ## train the shipped scoring model from the synthetic population; prints hold-out AUC with and without social features
	cargo run --release -p microloan-scoring -- train-population --seed 42 --customers 10000 --out services/scoring/model/default.json

.PHONY: german-credit
german-credit: ## cross-validate the scorecard on the German credit data
	cargo run --release -p microloan-scoring -- cross-validate --data services/scoring/data/german_credit.csv --target creditability --bad-value bad --folds 5 --repeats 5
