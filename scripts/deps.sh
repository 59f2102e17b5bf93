#!/bin/sh
# scripts/deps.sh — make sure everything the build and the tests need is installed: Debian packages
# (only the missing ones, with apt-get, when run as root; otherwise it prints the exact command to
# run and fails) and the browser test's npm packages (playwright-core, pinned by
# tests/browser/package-lock.json). Nothing comes from anywhere but Debian's archive and npm.
set -eu
cd "$(dirname "$0")/.."

PKGS="build-essential pkg-config libmicrohttpd-dev libjansson-dev libsqlite3-dev libuv1-dev
libopenblas-dev libdnnl-dev libpng-dev libjpeg-dev zlib1g-dev libcmocka-dev curl python3
sqlite3 dataset-fashion-mnist chromium libjs-chart.js libcurl4-openssl-dev nettle-dev libarchive-dev
clang libclang-rt-14-dev libomp-14-dev python3-jsonschema python3-yaml
slurmctld slurmd slurm-client munge wrk"
# libarchive: uploaded dataset archives (tar, tar.gz, zip) and `coretune upload DIR`.
# clang + compiler-rt: the libFuzzer targets (make fuzz, and briefly in make test); libomp: the trainer's
# OpenMP under clang. python3-jsonschema + python3-yaml: the e2e suite checks every answer against
# docs/openapi.yaml.
# slurmctld, slurmd, slurm-client, munge: the Slurm executor's tests run a private one-node cluster.
# wrk: the HTTP load generator behind make bench-api.
# PyTorch is needed only to regenerate fixtures and to benchmark (make golden / make bench).
if [ "${CT_WITH_TORCH:-0}" = 1 ]; then PKGS="$PKGS python3-torch python3-torchvision"; fi

missing=""
for p in $PKGS; do
    s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$s" in *"ok installed"*) ;; *) missing="$missing $p" ;; esac
done
# Node.js may come from elsewhere than Debian (with its own npm): ask for the commands, not packages.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "coretuned: missing Debian packages:$missing" >&2
        echo "run:  sudo apt-get update && sudo apt-get install -y$missing" >&2
        exit 1
    fi
    echo "coretuned: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The dashboard's browser test drives Debian's chromium with playwright-core from npm.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "coretuned: installing tests/browser npm packages"
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
# The OpenAI-client compatibility test drives the daemon with OpenAI's official JS library.
if [ ! -d tests/sdk/node_modules/openai ]; then
    echo "coretuned: installing tests/sdk npm packages"
    (cd tests/sdk && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
# docs/openapi.yaml is linted with the Redocly CLI (tests/e2e/test_openapi.py).
if [ ! -d tests/openapi/node_modules/@redocly/cli ]; then
    echo "coretuned: installing tests/openapi npm packages"
    (cd tests/openapi && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
