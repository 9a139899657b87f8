#pragma once

/// The whole public interface of the serialserver library.

#include <serialserver/binary_reader.hpp>
#include <serialserver/binary_writer.hpp>
#include <serialserver/byte_order.hpp>
#include <serialserver/client.hpp>
#include <serialserver/duration.hpp>
#include <serialserver/error.hpp>
#include <serialserver/interceptor.hpp>
#include <serialserver/listener.hpp>
#include <serialserver/logger.hpp>
#include <serialserver/metrics.hpp>
#include <serialserver/protocol.hpp>
#include <serialserver/request_reader.hpp>
#include <serialserver/response.hpp>
#include <serialserver/server.hpp>
#include <serialserver/session_data.hpp>
#include <serialserver/task.hpp>
#include <serialserver/task_adapters.hpp>
#include <serialserver/task_metadata.hpp>
#include <serialserver/timeout.hpp>
#include <serialserver/tls.hpp>
#include <serialserver/wire/block_decoder.hpp>
#include <serialserver/wire/block_encoder.hpp>
