#!/usr/bin/env bash
# Builds the JavaScript and Python example functions from source into WebAssembly
# components, in target/function-examples/ (or the directory given as $1):
#   enrich-js.wasm       examples/js/app.js       componentize-js, every WASI feature disabled
#   enrich-py.wasm       examples/python/app.py   componentize-py --stub-wasi
#   enrich-py-wasi.wasm  examples/python/app.py   componentize-py, WASI left in: must not deploy
# Installs the pinned tools first if they are missing (npm ci from js/package-lock.json;
# pip install --user from python/requirements.txt). Never commit the .wasm files.
# Then: RUNNEL_FUNCTION_EXAMPLES=1 cargo test -p runnel-functions --test it examples
set -euo pipefail
EXAMPLES="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$EXAMPLES/../../.." && pwd)"
OUT="${1:-$ROOT/target/function-examples}"
PYTHON="${PYTHON:-python3}"
WIT="$EXAMPLES/../wit"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# --- tools, pinned ---
JS_PINNED="$(node -p 'require(process.argv[1]).devDependencies["@bytecodealliance/componentize-js"]' "$EXAMPLES/js/package.json")"
JS_FOUND="$(cd "$EXAMPLES/js" && node_modules/.bin/componentize-js --version 2>/dev/null || true)"
if [ "$JS_FOUND" != "$JS_PINNED" ]; then
    echo "== npm ci (componentize-js $JS_PINNED)"
    npm ci --prefix "$EXAMPLES/js" --no-audit --no-fund
fi

componentize_py() {
    "$PYTHON" -c 'import sys; from componentize_py import script; sys.argv[0] = "componentize-py"; sys.exit(script())' "$@"
}
PY_PINNED="$(sed -n 's/^componentize-py==//p' "$EXAMPLES/python/requirements.txt")"
PY_FOUND="$(componentize_py --version 2>/dev/null || true)"
if [ "$PY_FOUND" != "componentize-py $PY_PINNED" ]; then
    echo "== pip install --user componentize-py==$PY_PINNED"
    "$PYTHON" -m pip install --user --disable-pip-version-check -q -r "$EXAMPLES/python/requirements.txt"
fi

# --- components ---
echo "== enrich-js.wasm (componentize-js $JS_PINNED)"
# -d: disable every WASI feature of the JS engine so the component imports only
# runnel:function/host (runnel offers no WASI). Uncaught exceptions then trap instead of
# printing, which is why app.js catches its own and returns them as errors.
(cd "$EXAMPLES/js" && node_modules/.bin/componentize-js app.js --wit "$WIT" --world-name function \
    -d stdio random clocks http fetch-event -o "$OUT/enrich-js.wasm")

echo "== enrich-py.wasm (componentize-py $PY_PINNED --stub-wasi)"
# --stub-wasi: every WASI import becomes a stub that traps if called (print() included),
# and the random seed is fixed at build time. The pure-computation code of a function
# never reaches them.
componentize_py -q -d "$WIT" -w function componentize --stub-wasi -p "$EXAMPLES/python" app -o "$OUT/enrich-py.wasm"

echo "== enrich-py-wasi.wasm (componentize-py $PY_PINNED, WASI imports kept)"
componentize_py -q -d "$WIT" -w function componentize -p "$EXAMPLES/python" app -o "$OUT/enrich-py-wasi.wasm"

ls -l "$OUT"/enrich-js.wasm "$OUT"/enrich-py.wasm "$OUT"/enrich-py-wasi.wasm
