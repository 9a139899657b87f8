#pragma once

// The summary a run prints on stdout: text for people, --json and --csv for programs.

#include "options.hpp"
#include "statistics.hpp"

namespace serialbench {

/// Prints `summary` of a run with `config` on stdout: as text, as one JSON object (written with
/// nlohmann-json, so that any address, even one with control characters or bytes that are not
/// UTF-8, gives valid JSON), or as CSV rows "field,value" (the JSON's fields, nested names
/// joined with '.').
void print_summary(const Config& config, const Summary& summary);

}  // namespace serialbench
