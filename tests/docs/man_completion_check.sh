#!/usr/bin/env bash
# Checks the programs' man pages and their bash completion (cmake/SerialserverDocs.cmake):
# - each man page was generated, names its program in its title and NAME section, and shows
#   the program's options (its --help was read), and serialctl's its subcommands';
# - the completion script parses (`bash -n`), registers a completion for each program
#   (`complete -p`), and completes, by asking the real programs: the first program with
#   subcommands gets them offered, and an option of one of its subcommands; every program gets
#   --help offered for "--h".
#
# Usage: man_completion_check.sh MAN_DIR COMPLETION_SCRIPT BIN_DIR PROGRAM...
set -euo pipefail

man_dir="$1"
script="$2"
bin_dir="$3"
shift 3
programs=("$@")

fail() {
  echo "man_completion_check: FAIL: $*" >&2
  exit 1
}

((${#programs[@]} > 0)) || fail "no programs given"

# ---- man pages --------------------------------------------------------------------------------
for program in "${programs[@]}"; do
  page="$man_dir/$program.1"
  [[ -s "$page" ]] || fail "no man page $page"
  upper="$(tr '[:lower:]' '[:upper:]' <<<"$program")"
  grep -q "^\.TH \"\?$upper\"\? " "$page" || fail "$page: no title line for $program"
  # The NAME section: "program \- summary" (roff escapes some dashes; compared without them).
  # (Compared from a variable: grep -q in a pipeline would end sed early, which pipefail reports.)
  plain="$(sed 's/\\//g' "$page")"
  grep -q -- "^$program - " <<<"$plain" || fail "$page: no NAME line for $program"
  grep -q -- "help" "$page" || fail "$page: the options (--help) are missing"
  # A program with subcommands documents each of them (serialctl: call, keepalive, goodbye).
  if [[ "$program" == serialctl ]]; then
    for sub in call keepalive goodbye; do
      grep -q "^\.SS \"serialctl $sub\"" "$page" || fail "$page: no section for 'serialctl $sub'"
    done
    grep -q -- "--data" <<<"$plain" || fail "$page: the options of 'call' are missing"
  fi
  if command -v man >/dev/null; then
    rendered="$(MANWIDTH=100 man -l "$page" 2>/dev/null | col -b 2>/dev/null || true)"
    [[ "$rendered" == *"$program"* ]] || fail "$page: man -l does not render the program's name"
  fi
done

# ---- bash completion --------------------------------------------------------------------------
bash -n "$script" || fail "$script does not parse"

for program in "${programs[@]}"; do
  spec="$(bash -c 'source "$1" && complete -p "$2"' _ "$script" "$program" 2>&1)" ||
    fail "no completion registered for $program: $spec"
  [[ "$spec" == *"-F _serialserver_complete"* ]] || fail "$program: unexpected completion '$spec'"
done

# Completes the words given (the last one being completed) with the real programs on PATH, and
# prints the candidates, one a line.
complete_words() {
  PATH="$bin_dir:$PATH" bash -c '
    source "$1"; shift
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _serialserver_complete
    printf "%s\n" "${COMPREPLY[@]}"' _ "$script" "$@"
}

for program in "${programs[@]}"; do
  out="$(complete_words "$program" --h)"
  grep -qx -- "--help" <<<"$out" || fail "$program --h<TAB>: no --help offered (got: $out)"
done

# A program with subcommands: serialctl (call, keepalive, goodbye).
if [[ " ${programs[*]} " == *" serialctl "* ]]; then
  out="$(complete_words serialctl "")"
  for sub in call keepalive goodbye; do
    grep -qx "$sub" <<<"$out" || fail "serialctl <TAB>: '$sub' not offered (got: $out)"
  done
  out="$(complete_words serialctl ca)"
  [[ "$out" == "call" ]] || fail "serialctl ca<TAB>: expected 'call', got '$out'"
  out="$(complete_words serialctl call 127.0.0.1:7070 1 --d)"
  grep -qx -- "--data" <<<"$out" || fail "serialctl call ... --d<TAB>: no --data (got: $out)"
fi

echo "man_completion_check: OK (${programs[*]})"
