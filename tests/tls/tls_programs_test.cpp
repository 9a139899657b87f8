// The real programs over TLS: serialserver-demo --tls-cert/--tls-key[/--tls-client-ca] served
// to serialctl --tls and serialbench --tls, end to end, by exit status.

#include "support/loopback.hpp"
#include "support/program_run.hpp"
#include "tls_certs.hpp"

#include <signal.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace serialserver::test {
namespace {

/// Runs bin_dir()/`program` with `args` (stdout into `out_path` if given), bounded by 120 s.
ProgramRun run(const std::string& program, const std::vector<std::string>& args,
               const std::string& out_path = "/dev/null") {
  ProgramSetup setup;
  setup.stdout_path = out_path;
  setup.timeout = 120s;
  return run_program(program, args, setup);
}

class TlsPrograms : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { certs_ = new TlsCerts(); }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(certs_->ok()) << certs_->log(); }
  void TearDown() override {
    if (demo_) {
      demo_->signal(SIGTERM);
      EXPECT_EQ(demo_->wait_exit(20s), 0) << demo_log();
      demo_.reset();
    }
    std::filesystem::remove(certs_->path("demo.log"));
    std::filesystem::remove(certs_->path("tool.out"));
  }

  static std::string cert(const std::string& name) { return certs_->path(name); }

  /// Starts the demo with TLS (mutual TLS with `client_ca`) on a free port.
  void start_demo(const std::string& client_ca = "") {
    port_ = free_port();
    address_ = "127.0.0.1:" + std::to_string(port_);
    std::vector<std::string> args{"--listen",  address_,          "--threads",
                                  "2",         "--tls-cert",      cert("server.pem"),
                                  "--tls-key", cert("server.key")};
    if (!client_ca.empty()) {
      args.insert(args.end(), {"--tls-client-ca", cert(client_ca)});
    }
    demo_ =
        std::make_unique<ChildProcess>(bin_dir() + "/serialserver-demo", args, cert("demo.log"));
    ASSERT_TRUE(wait_for_port(port_)) << demo_log();
  }
  std::string demo_log() const { return read_whole(cert("demo.log")); }

  ProgramRun serialctl(std::vector<std::string> args) {
    return run("serialctl", args, cert("tool.out"));
  }
  ProgramRun serialbench(std::vector<std::string> args) { return run("serialbench", args); }
  std::string tool_out() const { return read_whole(cert("tool.out")); }

  static TlsCerts* certs_;
  std::unique_ptr<ChildProcess> demo_;
  std::uint16_t port_ = 0;
  std::string address_;
};

TlsCerts* TlsPrograms::certs_ = nullptr;

TEST_F(TlsPrograms, SerialctlOverTls) {
  start_demo();
  auto r = serialctl(
      {"--tls", "--tls-ca", cert("ca.pem"), "call", address_, "1", "--data", "68656c6c6f"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(tool_out(), "hello");
  r = serialctl({"--tls", "--tls-ca", cert("ca.pem"), "--tls-server-name", "localhost", "call",
                 address_, "3", "--data", "09"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("serialctl: error 9"), std::string::npos) << r.err;
  r = serialctl({"keepalive", address_, "--tls", "--tls-ca", cert("ca.pem")});  // flags after
  EXPECT_EQ(r.status, 0) << r.err;
  r = serialctl({"--tls", "--tls-ca", cert("ca.pem"), "goodbye", address_});
  EXPECT_EQ(r.status, 0) << r.err;

  // Refusals: an untrusted server, a plaintext client, a wrong name.
  r = serialctl({"--tls", "--tls-ca", cert("other-ca.pem"), "call", address_, "2"});
  EXPECT_EQ(r.status, 3) << r.err;
  EXPECT_NE(r.err.find("certificate verify failed"), std::string::npos) << r.err;
  r = serialctl({"call", address_, "2", "--timeout", "20s"});
  EXPECT_EQ(r.status, 3) << r.err;
  r = serialctl({"--tls", "--tls-ca", cert("ca.pem"), "--tls-server-name", "example.com", "call",
                 address_, "2"});
  EXPECT_EQ(r.status, 3) << r.err;
  // Usage: --tls-ca without --tls.
  r = serialctl({"--tls-ca", cert("ca.pem"), "call", address_, "2"});
  EXPECT_EQ(r.status, 64) << r.err;

  // The server logged the failed handshakes and kept serving.
  EXPECT_NE(demo_log().find("TLS handshake with 127.0.0.1:"), std::string::npos) << demo_log();
  r = serialctl({"--tls", "--tls-ca", cert("ca.pem"), "call", address_, "2"});
  EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(TlsPrograms, SerialbenchOverTls) {
  start_demo();
  auto r = serialbench({address_, "--tls", "--tls-ca", cert("ca.pem"), "-c", "4", "-P", "8",
                        "--task", "1", "--size", "3000", "-n", "2000", "--threads", "2", "-q"});
  EXPECT_EQ(r.status, 0) << r.err;
  r = serialbench({address_, "--tls", "--tls-ca", cert("ca.pem"), "-c", "2", "-n", "500", "-q"});
  EXPECT_EQ(r.status, 0) << r.err;
  // A server it cannot verify: cannot connect (3).
  r = serialbench({address_, "--tls", "--tls-ca", cert("other-ca.pem"), "-n", "10", "-q"});
  EXPECT_EQ(r.status, 3) << r.err;
  EXPECT_NE(r.err.find("certificate verify failed"), std::string::npos) << r.err;
}

TEST_F(TlsPrograms, MutualTls) {
  start_demo("ca.pem");
  auto r = serialctl({"--tls", "--tls-ca", cert("ca.pem"), "--tls-cert", cert("client.pem"),
                      "--tls-key", cert("client.key"), "call", address_, "1", "--data", "6869"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(tool_out(), "hi");
  r = serialctl({"--tls", "--tls-ca", cert("ca.pem"), "call", address_, "1", "--data", "6869"});
  EXPECT_EQ(r.status, 3) << r.err;
  r = serialctl({"--tls", "--tls-ca", cert("ca.pem"), "--tls-cert", cert("other-client.pem"),
                 "--tls-key", cert("other-client.key"), "call", address_, "2"});
  EXPECT_EQ(r.status, 3) << r.err;
  r = serialbench({address_, "--tls", "--tls-ca", cert("ca.pem"), "--tls-cert", cert("client.pem"),
                   "--tls-key", cert("client.key"), "-c", "2", "-P", "4", "-n", "1000", "-q"});
  EXPECT_EQ(r.status, 0) << r.err;
  r = serialbench({address_, "--tls", "--tls-ca", cert("ca.pem"), "-n", "10", "-q"});
  EXPECT_NE(r.status, 0) << r.err;
}

TEST_F(TlsPrograms, DemoRefusesMissingCertificateFiles) {
  const auto port = free_port();
  const auto r =
      run("serialserver-demo", {"--listen", "127.0.0.1:" + std::to_string(port), "--tls-cert",
                                cert("missing.pem"), "--tls-key", cert("server.key")});
  EXPECT_EQ(r.status, 64) << r.err;  // a usage error, found before anything starts
  EXPECT_NE(r.err.find("missing.pem"), std::string::npos) << r.err;
  // --tls-key is required with --tls-cert.
  const auto usage = run("serialserver-demo", {"--tls-cert", cert("server.pem")});
  EXPECT_NE(usage.status, 0);
}

}  // namespace
}  // namespace serialserver::test
