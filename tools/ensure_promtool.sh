#!/usr/bin/env bash
# Print the path of a promtool binary, installing Debian's prometheus package when none is found.
#   tools/ensure_promtool.sh            -> /usr/bin/promtool
# $PROMTOOL, when set, names the binary to use instead. Idempotent; quiet unless it fails.
set -euo pipefail

die() {
    echo "ensure_promtool: $*" >&2
    exit 1
}

found() {
    "$1" --version >/dev/null 2>&1 || die "$1 is there but does not run ('$1 --version' failed)"
    echo "$1"
    exit 0
}

if [[ -n "${PROMTOOL:-}" ]]; then
    [[ -x "$PROMTOOL" ]] || die "PROMTOOL=$PROMTOOL is not an executable file"
    found "$PROMTOOL"
fi
if path=$(command -v promtool); then
    found "$path"
fi
[[ -x /usr/bin/promtool ]] && found /usr/bin/promtool

command -v apt-get >/dev/null 2>&1 \
    || die "no promtool on PATH and no apt-get to install it; install Prometheus's promtool (https://prometheus.io/download/) or set PROMTOOL=/path/to/promtool"

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null \
        || die "no promtool on PATH; installing it needs root: run 'sudo apt-get install --no-install-recommends prometheus' or set PROMTOOL=/path/to/promtool"
    sudo=(sudo -n)
fi

log=$(mktemp "${TMPDIR:-/tmp}/ensure_promtool.XXXXXX")
trap 'rm -f "$log"' EXIT
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
if ! { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends prometheus; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "apt-get could not install the 'prometheus' package (which provides promtool); see the output above"
fi

[[ -x /usr/bin/promtool ]] || die "the 'prometheus' package installed but /usr/bin/promtool is missing"
found /usr/bin/promtool
