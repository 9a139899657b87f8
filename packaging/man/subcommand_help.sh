#!/usr/bin/env bash
# Writes a help2man include file (help2man --include) for a program's man page: a SUBCOMMANDS
# section with the --help text of each of its subcommands, as the program prints it, and a SEE
# ALSO section naming the project's other programs. The subcommands are the names listed under
# "Subcommands:" in `PROGRAM --help` (CLI11's layout).
#
# Usage: subcommand_help.sh PROGRAM OUTPUT
set -euo pipefail

program="$1"
output="$2"
name="$(basename "$program")"

subcommands="$("$program" --help | awk 'tolower($0) ~ /^subcommands:/ { in_list = 1; next }
                                        in_list && /^[^ \t]/ { in_list = 0 }
                                        in_list && $1 ~ /^[a-zA-Z]/ { print $1 }')"

{
  if [[ -n "$subcommands" ]]; then
    printf '[SUBCOMMANDS]\n'
    for sub in $subcommands; do
      printf '.SS "%s %s"\n.nf\n' "$name" "$sub"
      # roff: a backslash is written \e; a line that starts with . or ' is escaped with \&. The
      # usage line names the program by the path it was run from: shown by its name instead.
      "$program" "$sub" --help |
        sed -e 's/\\/\\e/g' -e "s|^Usage: [^ ]*$name |Usage: $name |" -e "s/^[.']/\\\\\\&&/"
      printf '.fi\n'
    done
  fi
  printf '[SEE ALSO]\n'
  see_also=""
  for other in serialctl serialbench serialserver-log serialserver-logd serialserver-demo; do
    [[ "$other" == "$name" ]] || see_also+="${see_also:+,\n}.BR $other (1)"
  done
  printf '%b\n' "$see_also"
} >"$output"
