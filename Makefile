# flowstream.platform — the two README commands are `make demo` and `make test`.
# Run as root on Debian 12. Both run the idempotent set-up step first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PYTEST := $(BIN)/pytest -p no:cacheprovider

.PHONY: setup demo test unit sanity integration lint changelog-lint lab-up lab-down bench clean help

help:
	@echo "make demo   - set up, bring up the one-machine lab and show the platform"
	@echo "make test   - set up, then unit tests, changelog lint, ansible-lint, ansible-test sanity, integration tests"
	@echo "make lab-up / make lab-down / make bench / make setup"

setup:
	@scripts/setup.sh

demo: setup
	$(BIN)/ansible-inventory -i inventory/lab --graph
	$(BIN)/ansible-playbook playbooks/lab-up.yml

test: setup
	$(MAKE) --no-print-directory unit changelog-lint lint sanity integration

unit:
	$(PYTEST) -q tests/unit

changelog-lint:
	$(BIN)/antsibull-changelog lint

sanity:
	scripts/sanity.sh

integration:
	$(PYTEST) -v -s tests/integration

lint:
	$(BIN)/ansible-lint --offline roles playbooks

lab-up: setup
	$(BIN)/ansible-playbook playbooks/lab-up.yml

lab-down: setup
	$(BIN)/ansible-playbook playbooks/lab-down.yml

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .tmp tests/output
