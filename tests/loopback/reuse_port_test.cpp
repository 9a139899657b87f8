// ListenerOptions::reuse_port over real sockets: two listeners (of two servers) share one
// 127.0.0.1 port with it and both serve; without it the second bind fails with "address in
// use"; it is ignored for a Unix socket; start warns when the kernel's setting would reset
// queued connections at a hand-over; and the two programs take --reuse-port.

#include "support/loopback.hpp"

#include <signal.h>

#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

const Bytes kKeepAlive = bytes({0xFA, 0x00});
const Bytes kOkEmpty = bytes({0x00, 0x00});

ListenerOptions listener_at(std::string address, bool reuse_port) {
  auto o = TestServer::default_listener_options();
  o.address = std::move(address);
  o.reuse_port = reuse_port;
  return o;
}

/// Starts a listener of a server of its own on `port`; the error code of a failed bind, if any.
std::error_code bind_error(std::uint16_t port, bool reuse_port) {
  Server server(TestServer::quiet_options());
  Listener listener(server, listener_at("127.0.0.1:" + std::to_string(port), reuse_port));
  try {
    listener.start();
  } catch (const std::system_error& e) {
    return e.code();
  }
  return {};
}

TEST(ReusePort, TwoListenersWithItShareAPortAndBothServe) {
  TestServer first(TestServer::quiet_options(), listener_at("127.0.0.1:0", true));
  first.start();
  const auto port = first.port();
  TestServer second(TestServer::quiet_options(),
                    listener_at("127.0.0.1:" + std::to_string(port), true));
  ASSERT_NO_THROW(second.start());
  EXPECT_EQ(second.port(), port);

  // The kernel spreads connections over the two by a hash of the peer's address: connect
  // until each server has had one (the source port changes every time).
  bool first_served = false;
  bool second_served = false;
  for (int i = 0; i < 200 && !(first_served && second_served); ++i) {
    RawClient c(port);
    ASSERT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
    first_served = first_served || first.server().num_clients() > 0;
    second_served = second_served || second.server().num_clients() > 0;
  }
  EXPECT_TRUE(first_served);
  EXPECT_TRUE(second_served);

  // One stops: the other goes on serving every new connection on the port.
  first.stop(0ms);
  for (int i = 0; i < 20; ++i) {
    RawClient c(port);
    EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
  }
}

/// What /proc says of net.ipv4.tcp_migrate_req: "0", "1", or "" where it cannot be read.
std::string tcp_migrate_req() {
  std::ifstream file("/proc/sys/net/ipv4/tcp_migrate_req");
  std::string value;
  file >> value;
  return value;
}

TEST(ReusePort, StartWarnsWhenTheKernelWouldResetQueuedConnections) {
  // The machine's setting decides which branch runs; each asserts its own outcome.
  const bool kernel_resets = tcp_migrate_req() == "0";
  TestServer sharing(TestServer::quiet_options(), listener_at("127.0.0.1:0", true));
  sharing.start();
  EXPECT_EQ(sharing.logger()->contains("net.ipv4.tcp_migrate_req is 0"), kernel_resets)
      << "tcp_migrate_req reads '" << tcp_migrate_req() << "'";

  TestServer alone(TestServer::quiet_options(), listener_at("127.0.0.1:0", false));
  alone.start();
  EXPECT_FALSE(alone.logger()->contains("tcp_migrate_req"));
}

TEST(ReusePort, WithoutItTheSecondBindFailsWithAddressInUse) {
  TestServer first(TestServer::quiet_options(), listener_at("127.0.0.1:0", false));
  first.start();
  EXPECT_EQ(bind_error(first.port(), false), make_error_code(asio::error::address_in_use));
  // Both sockets must ask for the sharing: one alone is refused either way.
  EXPECT_EQ(bind_error(first.port(), true), make_error_code(asio::error::address_in_use));

  TestServer sharing(TestServer::quiet_options(), listener_at("127.0.0.1:0", true));
  sharing.start();
  EXPECT_EQ(bind_error(sharing.port(), false), make_error_code(asio::error::address_in_use));

  RawClient c(first.port());
  EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
}

TEST(ReusePort, IsIgnoredForAUnixSocket) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("serialserver-reuse-port-" + std::to_string(::getpid()) + ".sock");
  TestServer s(TestServer::quiet_options(), listener_at(path.string(), true));
  ASSERT_NO_THROW(s.start());
  RawClient c(path.string());
  EXPECT_EQ(c.call(kKeepAlive, 2), kOkEmpty);
  // A second listener on a live socket is still refused: the option does not apply.
  Server server(TestServer::quiet_options());
  Listener second(server, listener_at(path.string(), true));
  EXPECT_THROW(second.start(), std::system_error);
  s.stop(0ms);
  EXPECT_FALSE(std::filesystem::exists(path));
}

/// Two copies of a real program on one port: both start with --reuse-port, and a third
/// without it fails to start (status 1, "address in use" on stderr).
void check_program_shares_a_port(const std::string& program,
                                 const std::vector<std::string>& extra_args) {
  const auto port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  const auto dir = std::filesystem::temp_directory_path() /
                   ("serialserver-reuse-port-" + program + "-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto args_for = [&](const std::string& name, bool reuse) {
    std::vector<std::string> args{"--listen", listen};
    if (reuse) {
      args.emplace_back("--reuse-port");
    }
    for (const auto& a : extra_args) {
      args.push_back(a == "@DB" ? (dir / (name + ".db")).string() : a);
    }
    return args;
  };
  const std::string path = bin_dir() + "/" + program;
  {
    ChildProcess first(path, args_for("first", true), (dir / "first.log").string());
    ASSERT_TRUE(wait_for_port(port));
    ChildProcess second(path, args_for("second", true), (dir / "second.log").string());
    // The second one lives on (a failed bind would end it with status 1 at once).
    EXPECT_FALSE(second.wait_exit(1500ms).has_value());
    ChildProcess third(path, args_for("third", false), (dir / "third.log").string());
    EXPECT_EQ(third.wait_exit(10000ms), std::optional<int>(1));
    std::ifstream log(dir / "third.log");
    const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("in use"), std::string::npos) << text;
    first.signal(SIGTERM);
    second.signal(SIGTERM);
    EXPECT_EQ(first.wait_exit(10000ms), std::optional<int>(0));
    EXPECT_EQ(second.wait_exit(10000ms), std::optional<int>(0));
  }
  std::filesystem::remove_all(dir);
}

TEST(ReusePort, DemoProgramTakesTheFlag) {
  check_program_shares_a_port("serialserver-demo", {"--grace", "0s"});
}

TEST(ReusePort, LogdProgramTakesTheFlag) {
  check_program_shares_a_port("serialserver-logd", {"--grace", "0s", "--db", "@DB"});
}

}  // namespace
}  // namespace serialserver::test
