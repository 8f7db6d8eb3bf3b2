#!/usr/bin/env bash
# Install everything into .venv (first time) and run the test suite.
source "$(dirname "$0")/env.sh"
exec python -m pytest "$@"
