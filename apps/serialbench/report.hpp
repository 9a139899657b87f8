#pragma once

// The summary a run prints on stdout: text for people, --json for programs.

#include "options.hpp"
#include "statistics.hpp"

namespace serialbench {

/// Prints `summary` of a run with `config` on stdout, as text or (config.json) one JSON object.
void print_summary(const Config& config, const Summary& summary);

}  // namespace serialbench
