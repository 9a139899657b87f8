// The Server's task registry and its construction, without any socket: register and replace,
// reserved codes, empty functions, task(code), registered_task_codes(), Server(Timeout) and the
// default timeouts.

#include <serialserver/server.hpp>
#include <serialserver/timeout.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

namespace serialserver {
namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

/// A coroutine task function that carries an id, so that tests can tell registrations apart.
struct TaggedTask {
  int id = 0;
  asio::awaitable<Response> operator()(TaskContext& /*ctx*/) const { co_return Response(); }
};

/// A blocking task function that carries an id.
struct TaggedBlockingTask {
  int id = 0;
  Response operator()(TaskContext& /*ctx*/) const { return Response(); }
};

ServerOptions quiet() {
  ServerOptions o;
  o.logger = make_null_logger();
  return o;
}

TEST(ServerRegistry, TaskReturnsNameAndFunction) {
  Server server(quiet());
  server.register_task(7, TaggedTask{71}, "seven");
  const auto entry = server.task(7);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->name, "seven");
  ASSERT_TRUE(static_cast<bool>(entry->function));
  EXPECT_FALSE(static_cast<bool>(entry->blocking_function));
  const auto* target = entry->function.target<TaggedTask>();
  ASSERT_NE(target, nullptr);
  EXPECT_EQ(target->id, 71);
}

TEST(ServerRegistry, BlockingTaskReturnsNameAndBlockingFunction) {
  Server server(quiet());
  server.register_blocking_task(8, TaggedBlockingTask{81}, "eight");
  const auto entry = server.task(8);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->name, "eight");
  EXPECT_FALSE(static_cast<bool>(entry->function));
  ASSERT_TRUE(static_cast<bool>(entry->blocking_function));
  const auto* target = entry->blocking_function.target<TaggedBlockingTask>();
  ASSERT_NE(target, nullptr);
  EXPECT_EQ(target->id, 81);
}

TEST(ServerRegistry, NameMayBeEmpty) {
  Server server(quiet());
  server.register_task(3, TaggedTask{1});
  const auto entry = server.task(3);
  ASSERT_TRUE(entry.has_value());
  EXPECT_TRUE(entry->name.empty());
}

TEST(ServerRegistry, UnregisteredCodeHasNoTask) {
  Server server(quiet());
  EXPECT_FALSE(server.task(0).has_value());
  EXPECT_FALSE(server.task(249).has_value());
  server.register_task(1, TaggedTask{1}, "one");
  EXPECT_FALSE(server.task(2).has_value());
  EXPECT_FALSE(server.task(250).has_value());  // keep-alive is served, but not registered
  EXPECT_FALSE(server.task(255).has_value());
}

TEST(ServerRegistry, SecondRegistrationReplacesTheFirst) {
  Server server(quiet());
  server.register_task(5, TaggedTask{1}, "first");
  server.register_task(5, TaggedTask{2}, "second");
  auto entry = server.task(5);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->name, "second");
  ASSERT_NE(entry->function.target<TaggedTask>(), nullptr);
  EXPECT_EQ(entry->function.target<TaggedTask>()->id, 2);
  EXPECT_EQ(server.registered_task_codes(), std::vector<TaskCode>{5});

  // A blocking registration replaces a coroutine one entirely, and the other way round.
  server.register_blocking_task(5, TaggedBlockingTask{3}, "third");
  entry = server.task(5);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->name, "third");
  EXPECT_FALSE(static_cast<bool>(entry->function));
  ASSERT_NE(entry->blocking_function.target<TaggedBlockingTask>(), nullptr);
  EXPECT_EQ(entry->blocking_function.target<TaggedBlockingTask>()->id, 3);

  server.register_task(5, TaggedTask{4}, "fourth");
  entry = server.task(5);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->name, "fourth");
  EXPECT_FALSE(static_cast<bool>(entry->blocking_function));
  ASSERT_NE(entry->function.target<TaggedTask>(), nullptr);
  EXPECT_EQ(entry->function.target<TaggedTask>()->id, 4);
  EXPECT_EQ(server.registered_task_codes(), std::vector<TaskCode>{5});
}

TEST(ServerRegistry, EarlierSnapshotIsUnchangedByReplacement) {
  Server server(quiet());
  server.register_task(9, TaggedTask{1}, "old");
  const auto before = server.task(9);
  server.register_task(9, TaggedTask{2}, "new");
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(before->name, "old");
  EXPECT_EQ(before->function.target<TaggedTask>()->id, 1);
}

TEST(ServerRegistry, ReservedCodesThrowInvalidArgument) {
  Server server(quiet());
  for (int code = 250; code <= 255; ++code) {
    const auto c = static_cast<TaskCode>(code);
    EXPECT_THROW(server.register_task(c, TaggedTask{1}, "reserved"), std::invalid_argument)
        << "code " << code;
    EXPECT_THROW(server.register_blocking_task(c, TaggedBlockingTask{1}, "reserved"),
                 std::invalid_argument)
        << "code " << code;
    EXPECT_FALSE(server.task(c).has_value()) << "code " << code;
  }
  EXPECT_TRUE(server.registered_task_codes().empty());
  // The highest application code is fine.
  EXPECT_NO_THROW(server.register_task(249, TaggedTask{1}, "last"));
  EXPECT_EQ(server.registered_task_codes(), std::vector<TaskCode>{249});
}

TEST(ServerRegistry, EmptyFunctionThrowsInvalidArgument) {
  Server server(quiet());
  EXPECT_THROW(server.register_task(1, TaskFunction{}, "empty"), std::invalid_argument);
  EXPECT_THROW(server.register_blocking_task(1, BlockingTaskFunction{}, "empty"),
               std::invalid_argument);
  EXPECT_FALSE(server.task(1).has_value());
  EXPECT_TRUE(server.registered_task_codes().empty());

  // A failed registration leaves an earlier one in place.
  server.register_task(2, TaggedTask{7}, "kept");
  EXPECT_THROW(server.register_task(2, TaskFunction{}, "empty"), std::invalid_argument);
  const auto entry = server.task(2);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->name, "kept");
  EXPECT_EQ(entry->function.target<TaggedTask>()->id, 7);
}

TEST(ServerRegistry, RegisteredTaskCodesAreSorted) {
  Server server(quiet());
  EXPECT_TRUE(server.registered_task_codes().empty());
  for (const int code : {200, 3, 77, 0, 249, 128, 4}) {
    server.register_task(static_cast<TaskCode>(code), TaggedTask{code}, "t");
  }
  server.register_blocking_task(77, TaggedBlockingTask{1}, "again");  // no duplicate
  EXPECT_EQ(server.registered_task_codes(), (std::vector<TaskCode>{0, 3, 4, 77, 128, 200, 249}));
}

TEST(ServerRegistry, AllApplicationCodesCanBeRegistered) {
  Server server(quiet());
  for (int code = 0; code < 250; ++code) {
    server.register_task(static_cast<TaskCode>(code), TaggedTask{code});
  }
  const auto codes = server.registered_task_codes();
  ASSERT_EQ(codes.size(), 250U);
  for (std::size_t i = 0; i < codes.size(); ++i) {
    EXPECT_EQ(codes[i], static_cast<TaskCode>(i));
  }
}

TEST(ServerTimeouts, DefaultsAreThirtyMinutesFiveSecondsFiveSeconds) {
  EXPECT_EQ(Timeout::kDefaultWait, nanoseconds(30min));
  EXPECT_EQ(Timeout::kDefaultRead, nanoseconds(5s));
  EXPECT_EQ(Timeout::kDefaultWrite, nanoseconds(5s));
  const Timeout t;
  EXPECT_EQ(t.wait, nanoseconds(30min));
  EXPECT_EQ(t.read, nanoseconds(5s));
  EXPECT_EQ(t.write, nanoseconds(5s));
}

TEST(ServerTimeouts, DefaultServerUsesDefaultTimeouts) {
  Server server(quiet());
  EXPECT_EQ(server.options().timeout.wait, nanoseconds(30min));
  EXPECT_EQ(server.options().timeout.read, nanoseconds(5s));
  EXPECT_EQ(server.options().timeout.write, nanoseconds(5s));
}

TEST(ServerTimeouts, TimeoutConstructorKeepsTheTimeoutsAndDefaultsTheRest) {
  Timeout t;
  t.wait = 2min;
  t.read = 1500ms;
  t.write = 250ms;
  Server server(t);
  EXPECT_EQ(server.options().timeout.wait, nanoseconds(2min));
  EXPECT_EQ(server.options().timeout.read, nanoseconds(1500ms));
  EXPECT_EQ(server.options().timeout.write, nanoseconds(250ms));
  const ServerOptions defaults;
  EXPECT_EQ(server.options().max_request_bytes, defaults.max_request_bytes);
  EXPECT_EQ(server.options().max_request_bytes, std::uint64_t{64} << 20);
  EXPECT_EQ(server.options().max_request_duration, nanoseconds(30min));
  EXPECT_EQ(server.options().max_request_drain_bytes, std::uint64_t{64} << 20);
  EXPECT_EQ(server.options().worker_threads, defaults.worker_threads);
  EXPECT_EQ(server.options().max_queued_blocking_tasks, defaults.max_queued_blocking_tasks);
  EXPECT_EQ(server.options().shutdown_grace, nanoseconds(5s));
  EXPECT_NE(server.log(), nullptr);  // the default logger, never null
  EXPECT_EQ(server.metrics(), nullptr);
}

TEST(ServerState, FreshServerHasNoClients) {
  Server server(quiet());
  EXPECT_EQ(server.num_clients(), 0U);
  EXPECT_TRUE(server.clients().empty());
  EXPECT_TRUE(server.wait_for(0ms));
  server.wait();           // returns at once
  server.disconnect(0ms);  // nothing to disconnect
}

TEST(ServerState, SetLoggerAndMetrics) {
  Server server(quiet());
  auto logger = make_null_logger();
  server.set_logger(logger);
  EXPECT_EQ(server.log(), logger);
  server.set_logger(nullptr);  // never leaves the server without a logger
  EXPECT_NE(server.log(), nullptr);

  auto metrics = std::make_shared<Metrics>();
  server.set_metrics(metrics);
  EXPECT_EQ(server.metrics(), metrics);
  server.set_metrics(nullptr);
  EXPECT_EQ(server.metrics(), nullptr);
}

}  // namespace
}  // namespace serialserver
