#pragma once

// Adapters for the simpler task shapes that the Go package serialserverutil offered: a function
// with no request and no response, and a function from the whole request (bytes) to the whole
// response (bytes); each with or without the client handle and the cancellation token.
// A request that such a function does not read is drained by the server as usual.
//
// The plain-function adapters make blocking task functions (they run on the worker pool); the
// async_ ones make coroutine task functions (they run on the I/O threads and must not block).
// Thread-safety: the returned functions are called concurrently for different connections, so
// the wrapped callable must be safe to call concurrently.

#include <serialserver/client.hpp>
#include <serialserver/task.hpp>

#include <cstdint>
#include <functional>
#include <stop_token>
#include <vector>

#include <asio/awaitable.hpp>

namespace serialserver::adapters {

using Bytes = std::vector<std::uint8_t>;

/// No request, no response: `f()`. Blocking.
inline BlockingTaskFunction simple(std::function<void()> f) {
  return [f = std::move(f)](TaskContext&) {
    f();
    return Response();
  };
}
/// No request, no response, with the client and the cancellation token. Blocking.
inline BlockingTaskFunction simple_with_client(std::function<void(Client&, std::stop_token)> f) {
  return [f = std::move(f)](TaskContext& ctx) {
    f(ctx.client(), ctx.stop_token());
    return Response();
  };
}
/// Whole request in, whole response out. Blocking.
inline BlockingTaskFunction bytes(std::function<Bytes(Bytes)> f) {
  return [f = std::move(f)](TaskContext& ctx) { return Response(f(ctx.request().read_all())); };
}
/// Whole request in, whole response out, with the client and the cancellation token. Blocking.
inline BlockingTaskFunction bytes_with_client(
    std::function<Bytes(Client&, std::stop_token, Bytes)> f) {
  return [f = std::move(f)](TaskContext& ctx) {
    return Response(f(ctx.client(), ctx.stop_token(), ctx.request().read_all()));
  };
}

/// No request, no response, as a coroutine.
inline TaskFunction async_simple(std::function<asio::awaitable<void>()> f) {
  return [f = std::move(f)](TaskContext&) -> asio::awaitable<Response> {
    co_await f();
    co_return Response();
  };
}
/// No request, no response, as a coroutine with the client and the cancellation token.
inline TaskFunction async_simple_with_client(
    std::function<asio::awaitable<void>(Client&, std::stop_token)> f) {
  return [f = std::move(f)](TaskContext& ctx) -> asio::awaitable<Response> {
    co_await f(ctx.client(), ctx.stop_token());
    co_return Response();
  };
}
/// Whole request in, whole response out, as a coroutine.
inline TaskFunction async_bytes(std::function<asio::awaitable<Bytes>(Bytes)> f) {
  return [f = std::move(f)](TaskContext& ctx) -> asio::awaitable<Response> {
    Bytes request = co_await ctx.request().async_read_all();
    co_return Response(co_await f(std::move(request)));
  };
}
/// Whole request in, whole response out, as a coroutine with the client and the token.
inline TaskFunction async_bytes_with_client(
    std::function<asio::awaitable<Bytes>(Client&, std::stop_token, Bytes)> f) {
  return [f = std::move(f)](TaskContext& ctx) -> asio::awaitable<Response> {
    Bytes request = co_await ctx.request().async_read_all();
    co_return Response(co_await f(ctx.client(), ctx.stop_token(), std::move(request)));
  };
}

}  // namespace serialserver::adapters
