#!/usr/bin/env bash
# Each man page renders with `man -l` at 80 columns without a warning, and says what it must.
# usage: man_pages.sh PAGE...
set -euo pipefail
for page in "$@"; do
    warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
    if [ -n "$warnings" ]; then
        echo "FAIL: $page: $warnings"
        exit 1
    fi
    text=$(MANWIDTH=80 man -l "$page" 2>/dev/null)
    name=$(basename "$page")
    name=${name%.*}
    grep -q "^NAME" <<<"$text" || { echo "FAIL: $page has no NAME section"; exit 1; }
    grep -q "^       $name - " <<<"$text" || { echo "FAIL: $page does not name $name"; exit 1; }
    grep -q "^SEE ALSO" <<<"$text" || { echo "FAIL: $page has no SEE ALSO"; exit 1; }
    echo "ok: $page ($(echo "$text" | wc -l) lines)"
done
