#pragma once

// The serial protocol's client library: the coroutine API (Connection), the blocking API
// (Client), the connection pool (Pool) and its retry policy, their options, results and errors.

#include <serialclient/address.hpp>
#include <serialclient/client.hpp>
#include <serialclient/connection.hpp>
#include <serialclient/error.hpp>
#include <serialclient/options.hpp>
#include <serialclient/pool.hpp>
#include <serialclient/result.hpp>
#include <serialclient/retry.hpp>
#include <serialclient/tls.hpp>
