#!/usr/bin/env bash
# Prints one closing line with the totals of every `cargo test` binary in a log, so that the
# last line of `make test` reports the whole suite rather than the last (possibly empty)
# binary, e.g. a crate's doc-tests.
set -euo pipefail
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f; exit (f > 0) }' "$1"
