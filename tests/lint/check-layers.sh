#!/usr/bin/env bash
# The layer check: an include may point only down (or within its own folder).
#   lib/ < transport/ < services/ < node/ < orchestrator/
# Prints every include that points up, as FILE:LINE: folder -> folder, and exits 1 if
# there is one. Tests and tools (tests/) may include any layer.
set -uo pipefail
cd "$(dirname "$0")/../.."
shopt -s nullglob
files=(lib/*.[ch] transport/*.[ch] services/*.[ch] node/*.[ch] orchestrator/*.[ch])
awk '
BEGIN {
	rank["lib"] = 0; rank["transport"] = 1; rank["services"] = 2
	rank["node"] = 3; rank["orchestrator"] = 4
}
FNR == 1 { n++; split(FILENAME, p, "/"); from = p[1] }
/^[ \t]*#[ \t]*include[ \t]*"/ {
	inc = $0
	sub(/^[^"]*"/, "", inc); sub(/".*/, "", inc)
	split(inc, q, "/"); to = q[1]
	if (!(to in rank) || index(inc, "/") == 0) {
		printf "%s:%d: includes \"%s\": not a layer of the project\n", FILENAME, FNR, inc
		bad++
	} else if (rank[to] > rank[from]) {
		printf "%s:%d: %s/ -> %s/ points up (\"%s\")\n", FILENAME, FNR, from, to, inc
		bad++
	}
}
END {
	if (bad) {
		printf "check-layers: %d include(s) break the layers (lib < transport < services < node < orchestrator)\n", bad
		exit 1
	}
	printf "check-layers: %d files, every include points down\n", n
}' "${files[@]}"
