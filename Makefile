# flowstream.platform — the two README commands are `make demo` and `make test`.
# Run as root on Debian 12. Both run the idempotent set-up step first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PYTEST := $(BIN)/pytest -p no:cacheprovider

.PHONY: setup demo test unit static sanity integration molecule lint changelog-lint lab-up lab-down bench ee clean help

help:
	@echo "make demo   - set up, bring up the lab, deploy the example chains, prove them with the probe, draw the platform"
	@echo "make test   - set up, then unit tests, changelog lint, ansible-lint and ansible-test sanity (side by side), integration tests, molecule"
	@echo "make lab-up / make lab-down / make bench / make setup / make ee (execution environment build context)"

setup:
	@scripts/setup.sh

demo: setup
	$(BIN)/ansible-inventory -i inventory/lab --graph
	$(BIN)/ansible-playbook playbooks/lab-up.yml
	$(BIN)/ansible-playbook playbooks/deploy-chain.yml
	$(BIN)/ansible-playbook playbooks/show-platform.yml

test: setup
	$(MAKE) --no-print-directory unit changelog-lint static integration molecule

# ansible-lint and ansible-test sanity only read the tree (sanity a copy in .tmp/sanity, which
# lint excludes) and each keeps about one core busy: side by side on the two, each one's output
# together when it ends
static:
	$(MAKE) --no-print-directory -j2 --output-sync=target lint sanity

unit:
	$(PYTEST) -q -n auto tests/unit

changelog-lint:
	$(BIN)/antsibull-changelog lint

sanity:
	scripts/sanity.sh

integration:
	$(PYTEST) -v -s --durations=30 tests/integration

# reset first: molecule keeps a scenario's state (e.g. "prepared") under ~/.ansible/tmp, keyed by
# the checkout's path; a run that was cut short would otherwise skip prepare (lab-up) next time
# on failure, the failing tasks are printed again last (CI keeps only the tail of the output)
MOLECULE_SCENARIOS := deploy_chain drain_host
molecule:
	@mkdir -p .tmp
	@for s in $(MOLECULE_SCENARIOS); do \
	  $(BIN)/molecule reset -s $$s || exit 1; \
	  set -o pipefail; $(BIN)/molecule test -s $$s 2>&1 | tee .tmp/molecule-$$s.log || { \
	    echo "== molecule scenario $$s failed; the failing tasks again:"; \
	    grep -a -E -B3 -A25 'fatal:|FAILED!|failed: \[' .tmp/molecule-$$s.log | tail -80; exit 1; }; \
	done

# the whole tree at the production profile (.ansible-lint): roles, playbooks, molecule, the
# plugins' documentation, extensions, the inventories
lint:
	$(BIN)/ansible-lint --offline

# the execution environment's build context (execution-environment.yml; docs in README "AWX"):
# the collection's artifact, then ansible-builder create into .tmp/ee/context (podman build it)
ee: setup
	@mkdir -p .tmp/ee
	$(BIN)/ansible-galaxy collection build --force --output-path .tmp/ee .
	$(BIN)/ansible-builder create -f execution-environment.yml -c .tmp/ee/context --output-filename Containerfile

lab-up: setup
	$(BIN)/ansible-playbook playbooks/lab-up.yml

lab-down: setup
	$(BIN)/ansible-playbook playbooks/lab-down.yml

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .tmp tests/output
