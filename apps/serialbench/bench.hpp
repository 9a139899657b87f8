#pragma once

// A whole run: connect, start the workers, announce the phases, collect and report.

#include "options.hpp"

namespace serialbench {

/// Runs the benchmark `config` describes and prints its summary. Returns the exit status:
/// kExitOk, kExitErrors (errors, or nothing completed), kExitConnect, or kExitUsage (an engine
/// asked for that this build or kernel does not have).
int run(Config config);

}  // namespace serialbench
