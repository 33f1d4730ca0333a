#!/usr/bin/env bash
# Prints every failed test of a `cargo test --no-fail-fast` log, named with its test binary,
# then one closing line with the totals of every binary, so that the end of `make test`
# reports the whole suite rather than the last (possibly empty) binary. Exits 1 if any test
# failed, or if a binary did not run to its result line (a crash or a build failure).
set -euo pipefail
awk '
  /^ *Running / { binary = $0; sub(/^ *Running /, "", binary); started++ }
  /^ *Doc-tests / { binary = $0; sub(/^ */, "", binary); started++ }
  /^test .* \.\.\. FAILED$/ { sub(/^test /, ""); sub(/ \.\.\. FAILED$/, ""); failed[++nf] = binary ": " $0 }
  /^test result:/ { finished++; for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  END {
    for (i = 1; i <= nf; i++) printf "FAILED %s\n", failed[i]
    if (finished < started) printf "%d test binaries did not finish (see above)\n", started - finished
    printf "tests: %d passed, %d failed\n", p, f
    exit (f > 0 || finished < started)
  }' "$1"
