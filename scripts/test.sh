#!/usr/bin/env bash
# Run the whole test suite (installs what it needs first, idempotently).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/bootstrap.sh" --test
set -euo pipefail  # bootstrap restores the caller's options; ours must hold (ruff fails the run)
cd "$REPO"
ruff check src tests $(ls -d benchmarks 2>/dev/null)
exec python -m pytest "$@"
