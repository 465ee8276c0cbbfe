#!/usr/bin/env bash
# The whole test suite: every crate's unit and integration tests, then real Kafka clients
# (tests/compat) against a freshly started `runnel serve`.
set -euo pipefail
cd "$(dirname "$0")"
echo "== function examples (JavaScript with componentize-js, Python with componentize-py), built from source"
bash crates/functions/examples/build.sh
export RUNNEL_FUNCTION_EXAMPLES=1
echo "== cargo test --workspace"
cargo test --workspace
echo "== tests/compat"
bash tests/compat/run.sh
