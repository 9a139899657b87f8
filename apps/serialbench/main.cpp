// serialbench: a closed-loop load generator for serial-protocol servers, in the spirit of
// redis-benchmark. Each connection keeps --pipeline requests in flight; every response is
// validated (an echo must carry back the very request it answers: each request holds its
// connection number and sequence number), and latencies go into a histogram.
//
// It must not be the bottleneck: each thread runs one I/O engine (epoll_engine.hpp,
// uring_engine.hpp) over its share of the connections, responses are parsed in place by a
// streaming state machine (worker.hpp: nothing is buffered or allocated per request).

#include "bench.hpp"
#include "common/guarded_main.hpp"
#include "common/program.hpp"
#include "options.hpp"

#include <variant>

namespace {

int run_main(int argc, char** argv) {
  auto options = serialbench::parse_options(argc, argv);
  if (const int* status = std::get_if<int>(&options)) {
    return *status;
  }
  const int status = serialbench::run(std::get<serialbench::Config>(std::move(options)));
  // A summary that never reached standard output (a full disk, a closed pipe) is a failure.
  return serialserver::apps::finish_stdout("serialbench", status);
}

}  // namespace

int main(int argc, char** argv) {
  // Any other exception (such as std::bad_alloc for connections too large to build) ends the run
  // with nothing measured: status 1.
  return serialserver::apps::guarded_main("serialbench", serialbench::kExitErrors, run_main, argc,
                                          argv);
}
