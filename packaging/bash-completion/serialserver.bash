# Bash completion for the serialserver programs: serialctl, serialbench, serialserver-log,
# serialserver-logd and serialserver-demo.
#
# Installed once per program (share/bash-completion/completions/<program>), so that
# bash-completion loads it on the first completion of any of them; each copy registers all five.
#
# The lists are not written here: at completion time the program itself is asked (`PROGRAM
# --help`, and `PROGRAM SUBCOMMAND --help` once a subcommand has been typed), so the completion
# follows the program's options as they change. What is completed:
#   - after the program name (and its options): its subcommands, if it has any;
#   - a word that starts with '-': the options of the program, or of the subcommand typed;
#   - anything else: file names (addresses, databases and certificates are typed or files).

# Prints the help text of "$@" (a program, and a subcommand if given); nothing if it fails.
_serialserver_help() {
  timeout 5 "$@" --help 2>/dev/null
}

# Prints the subcommand names of a help text (the section CLI11 calls "Subcommands:").
_serialserver_subcommands() {
  awk 'tolower($0) ~ /^subcommands:/ { in_list = 1; next }
       in_list && /^[^ \t]/ { in_list = 0 }
       in_list && $1 ~ /^[a-zA-Z]/ { print $1 }' <<<"$1"
}

# Prints the option names of a help text: each line that starts, after spaces, with '-'.
_serialserver_options() {
  awk '/^[ \t]+-/ {
         n = split($1, names, ",")
         for (i = 1; i <= n; i++) if (names[i] ~ /^-/) print names[i]
       }' <<<"$1"
}

_serialserver_complete() {
  local program="${COMP_WORDS[0]}"
  local current="${COMP_WORDS[COMP_CWORD]}"
  local top_help subcommands subcommand="" word i

  top_help="$(_serialserver_help "$program")"
  subcommands="$(_serialserver_subcommands "$top_help")"

  # The subcommand already typed, if any: the first word before the cursor that is one.
  if [[ -n "$subcommands" ]]; then
    for ((i = 1; i < COMP_CWORD; i++)); do
      word="${COMP_WORDS[i]}"
      if grep -qxF -- "$word" <<<"$subcommands"; then
        subcommand="$word"
        break
      fi
    done
  fi

  if [[ "$current" == -* ]]; then
    local help="$top_help"
    if [[ -n "$subcommand" ]]; then
      help="$(_serialserver_help "$program" "$subcommand")"
    fi
    mapfile -t COMPREPLY < <(compgen -W "$(_serialserver_options "$help")" -- "$current")
    return 0
  fi

  if [[ -n "$subcommands" && -z "$subcommand" ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$subcommands" -- "$current")
    if ((${#COMPREPLY[@]} > 0)); then
      return 0
    fi
  fi

  # Values and positional arguments: file names (bash's default completion, from -o default).
  COMPREPLY=()
  return 0
}

complete -o default -F _serialserver_complete \
  serialctl serialbench serialserver-log serialserver-logd serialserver-demo
