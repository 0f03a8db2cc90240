#!/usr/bin/env bash
# The project's test command: installs the real DNS clients the interop tests use, then runs
# every test (unit tests, end-to-end tests against the real binary, interop with dig and kdig),
# and the formatting and lint checks.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
export FERRODNS_REQUIRE_TOOLS=1

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
