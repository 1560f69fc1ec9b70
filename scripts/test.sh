#!/usr/bin/env bash
# The test command of the README: formatting, lints, every test. Needs cmake and pkg-config
# (librdkafka build) and promtool on PATH; MariaDB-backed tests run when CDCMON_TEST_MYSQL_URL
# is set and say they were skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
