#pragma once

#include <cstdio>
#include <exception>

namespace serialserver::apps {

/// Runs a program's real entry point, `run(argc, argv)`, and turns an exception that escapes it
/// into one line on stderr, "<program>: <what>", and `failure_status`. Each program documents
/// which status that is (a failure to start, a transport failure, a run with nothing measured).
/// Thread-safety: called once, from main. Lifetime: `program` must outlive the call.
inline int guarded_main(const char* program, int failure_status, int (*run)(int, char**), int argc,
                        char** argv) noexcept {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
  } catch (...) {
    std::fprintf(stderr, "%s: unknown exception\n", program);
  }
  return failure_status;
}

}  // namespace serialserver::apps
