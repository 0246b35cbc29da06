#!/usr/bin/env bash
# The layer check: an include may point only down (or within its own folder).
#   lib/ < transport/ < services/ < node/ < orchestrator/
# Prints every include that points up, as FILE:LINE: folder -> folder, and exits 1 if
# there is one. Tests and tools (tests/) may include any layer.
set -uo pipefail
cd "$(dirname "$0")/../.."
rank() {
	case $1 in
	lib) echo 0 ;;
	transport) echo 1 ;;
	services) echo 2 ;;
	node) echo 3 ;;
	orchestrator) echo 4 ;;
	*) echo -1 ;;
	esac
}
bad=0
files=0
for f in lib/*.[ch] transport/*.[ch] services/*.[ch] node/*.[ch] orchestrator/*.[ch]; do
	[ -e "$f" ] || continue
	files=$((files + 1))
	from=${f%%/*}
	rf=$(rank "$from")
	while IFS=: read -r line inc; do
		to=${inc%%/*}
		rt=$(rank "$to")
		if [ "$rt" -lt 0 ]; then
			echo "$f:$line: includes \"$inc\": not a layer of the project"
			bad=$((bad + 1))
		elif [ "$rt" -gt "$rf" ]; then
			echo "$f:$line: $from/ -> $to/ points up (\"$inc\")"
			bad=$((bad + 1))
		fi
	done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
		sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1:\2/')
done
if [ "$bad" -gt 0 ]; then
	echo "check-layers: $bad include(s) break the layers (lib < transport < services < node < orchestrator)"
	exit 1
fi
echo "check-layers: $files files, every include points down"
