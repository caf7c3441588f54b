# The two commands of the README: `make lab` and `make test`. Everything they need is installed
# by the targets below, on a fresh Debian machine with Python 3, git and make.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# No __pycache__ in hubctl/, which the maintenance role copies to the hosts as it is.
export PYTHONDONTWRITEBYTECODE := 1
RELEASES ?= 12 13
SCENARIOS ?= preflight host postgresql site convert

.PHONY: help venv engine images lab lab-down lab-shell lab-psql lab-drill lint test-python molecule test

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml scripts/ensure-venv.sh scripts/ensure-promtool.sh
	@scripts/ensure-venv.sh $(VENV)
	@scripts/ensure-promtool.sh $(VENV)
	@touch $@

venv: $(VENV)/.installed ## Create the virtualenv from pyproject.toml (and Debian's promtool, amtool in it)

engine: ## Install and start Docker's engine if it is missing or stopped
	@scripts/ensure-engine.sh

images: engine ## Build the systemd-capable Debian 12 and 13 base images
	@for release in $(RELEASES); do scripts/build-base-image.sh $$release; done

lab: venv images ## Start the lab containers and run site.yml against them
	@scripts/lab.sh up

lab-drill: venv images ## DR drill: restore the lab's off-site backups onto a fresh container, verify, report
	@scripts/lab.sh drill

lab-down: ## Remove the lab containers and their data disk
	@scripts/lab.sh down

lab-shell: ## Open a shell on the lab's hub_db container
	@scripts/lab.sh shell

lab-psql: ## Open psql on the lab's hub database as the postgres user
	@scripts/lab.sh psql

lint: venv ## Run yamllint and ansible-lint (production profile)
	@echo "==> yamllint"
	@yamllint --strict .
	@echo "==> ansible-lint (production profile)"
	@ansible-lint --profile production

test-python: venv ## Run the Python tests
	@echo "==> pytest tests/"
	@pytest tests

molecule: venv images ## Run every Molecule scenario on every Debian release (releases side by side)
	@scripts/molecule-all.sh "$(SCENARIOS)" "$(RELEASES)"

test: lint test-python molecule ## The whole suite: lint, Python tests, every Molecule scenario
