// A program outside the serialserver tree, built against the installed package: a server with an
// echo task on 127.0.0.1 (a free port), one call through the client library; prints "OK" and
// exits 0 when the echo came back.

#include <serialserver/serialserver.hpp>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <system_error>
#include <vector>

#include <serialclient/serialclient.hpp>

int main() {
  serialserver::ServerOptions options;
  options.logger = serialserver::make_null_logger();
  serialserver::Server server(options);
  server.register_task(
      1,
      [](serialserver::TaskContext& ctx) -> asio::awaitable<serialserver::Response> {
        co_return serialserver::Response(co_await ctx.request().async_read_all());
      },
      "echo");
  serialserver::ListenerOptions listener_options;
  listener_options.address = "127.0.0.1:0";
  listener_options.io_threads = 1;
  serialserver::Listener listener(server, listener_options);
  listener.start();

  const std::vector<std::uint8_t> request{'p', 'i', 'n', 'g'};
  serialclient::Result result;
  std::error_code ec;
  {
    serialclient::Client client;
    client.connect(listener.local_address(), ec);
    if (!ec) {
      result = client.call(1, request, ec);
    }
  }
  listener.shutdown(std::chrono::seconds(1));
  listener.wait();

  if (ec) {
    std::cerr << "consumer: call failed: " << ec.message() << "\n";
    return 1;
  }
  if (!result.ok() || result.response != request) {
    std::cerr << "consumer: wrong answer from the echo task\n";
    return 1;
  }
  std::cout << "OK\n";
  return 0;
}
