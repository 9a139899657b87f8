#pragma once

// A call on a connection's Client handle made from outside its handlers, chosen by value: the
// connection fuzz target draws one from its input, the connection tests make each at every step.

#include <serialserver/client.hpp>

#include <chrono>
#include <cstdint>

namespace serialserver::test {

/// Which call: none, cancel(), close(), disconnect(0 s) or disconnect(10 s).
enum class HandleCall : std::uint8_t { none, cancel, close, disconnect_now, disconnect_later };

/// True for the two disconnects, after which the client may also get an unprompted Goodbye.
inline bool says_goodbye(HandleCall call) {
  return call == HandleCall::disconnect_now || call == HandleCall::disconnect_later;
}

/// Makes `call` on `client`. Thread-safety: as the Client member it calls.
inline void make_handle_call(Client& client, HandleCall call) {
  switch (call) {
    case HandleCall::none:
      break;
    case HandleCall::cancel:
      client.cancel();
      break;
    case HandleCall::close:
      client.close();
      break;
    case HandleCall::disconnect_now:
      client.disconnect(std::chrono::seconds(0));
      break;
    case HandleCall::disconnect_later:
      client.disconnect(std::chrono::seconds(10));
      break;
  }
}

}  // namespace serialserver::test
