#!/usr/bin/env bash
# Real-client compatibility suite: builds runnel (debug) once, then runs the Python clients
# (confluent-kafka, kafka-python, aiokafka: pytest on python/) and kafkajs (node --test in node/),
# each test module against a freshly started `runnel serve`. Prints a per-test summary and exits
# non-zero if anything failed. Dependencies must be installed first: bash tests/compat/install.sh
#
#   tests/compat/run.sh                   # everything
#   tests/compat/run.sh --python-only [pytest args, e.g. -k confluent]
#   tests/compat/run.sh --node-only
#
# Logs: runnel's stderr per test module/test in $TARGET/compat/logs/, JUnit XML in $TARGET/compat/.
set -uo pipefail
COMPAT="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$COMPAT/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
[[ "$TARGET" == /* ]] || TARGET="$REPO/$TARGET"
PYTHON="${PYTHON:-python3}"

run_python=1
run_node=1
case "${1:-}" in
  --python-only) run_python=1; run_node=0; shift ;;
  --node-only) run_python=0; run_node=1; shift ;;
esac

started=$(date +%s)
echo "== compat: cargo build -p runnel --bin runnel"
if ! (cd "$REPO" && cargo build -p runnel --bin runnel); then
  echo "compat: building runnel failed"
  echo "compat: 0 passed, 1 failed"
  exit 1
fi
export RUNNEL_BIN="$TARGET/debug/runnel"
export RUNNEL_COMPAT_LOG_DIR="$TARGET/compat/logs"
rm -rf "$RUNNEL_COMPAT_LOG_DIR"
mkdir -p "$RUNNEL_COMPAT_LOG_DIR"
results=()

if [[ $run_python == 1 ]]; then
  echo "== compat: python clients (pytest)"
  py_xml="$TARGET/compat/python-junit.xml"
  rm -f "$py_xml"
  (cd "$COMPAT/python" && "$PYTHON" -m pytest -ra --timeout=300 \
      --junitxml="$py_xml" -o junit_family=xunit1 "$@")
  results+=("python=$py_xml:$?")
fi

if [[ $run_node == 1 ]]; then
  echo "== compat: kafkajs (node --test)"
  node_xml="$TARGET/compat/node-junit.xml"
  rm -f "$node_xml"
  (cd "$COMPAT/node" && node --test --test-concurrency=1 --test-timeout=600000 \
      --test-reporter=spec --test-reporter-destination=stdout \
      --test-reporter=junit --test-reporter-destination="$node_xml")
  results+=("node=$node_xml:$?")
fi

"$PYTHON" "$COMPAT/summary.py" "${results[@]}"
rc=$?
echo "compat: finished in $(( $(date +%s) - started ))s; runnel logs in $RUNNEL_COMPAT_LOG_DIR"
exit $rc
