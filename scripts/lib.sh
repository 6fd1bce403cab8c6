# shellcheck shell=bash
# Shared helpers for scripts/*.sh. Source it right after `set -euo pipefail`:
#
#   here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
#   source "$here/lib.sh"
#
# It installs an EXIT trap that runs the commands registered with `on_exit`
# in reverse order (also after INT/TERM and after a failing command).

if [[ -n ${SLUICE_LIB_SH:-} ]]; then
	return 0
fi
SLUICE_LIB_SH=1

SLUICE_SCRIPT=$(basename "${BASH_SOURCE[1]:-$0}")

log() { printf '%s: %s\n' "$SLUICE_SCRIPT" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$SLUICE_SCRIPT" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$SLUICE_SCRIPT" "$*" >&2
	exit 1
}

# require_root WHY: exit with a clear message unless running as root.
require_root() {
	if [[ $(id -u) -ne 0 ]]; then
		die "must run as root (${1:-it needs root}); try: sudo $0 $*"
	fi
}

# require_cmd CMD...: exit unless every command is on PATH.
require_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "\`$c\` not found: run scripts/install-deps.sh"
	done
}

# Repository root (the directory above scripts/).
repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# on_exit CMD [ARGS...]: run CMD ARGS at exit, last registered first.
_sluice_cleanup=()
on_exit() {
	local quoted
	quoted=$(printf '%q ' "$@")
	_sluice_cleanup+=("$quoted")
}

_sluice_run_cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	for ((i = ${#_sluice_cleanup[@]} - 1; i >= 0; i--)); do
		eval "${_sluice_cleanup[i]}" || warn "cleanup step failed: ${_sluice_cleanup[i]}"
	done
	exit "$rc"
}
trap _sluice_run_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
