#pragma once

// Certificates for the TLS tests, made at test time with the `openssl` command in a temporary
// directory that is removed afterwards: a CA, a server certificate for localhost, 127.0.0.1 and
// ::1 signed by it, a client certificate signed by it, and a second CA (with a server and a
// client certificate of its own) that nothing trusts.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace serialserver::test {

class TlsCerts {
 public:
  TlsCerts() {
    dir_ = std::filesystem::temp_directory_path() /
           ("serialserver-tls-" + std::to_string(::getpid()) + "-" + std::to_string(++serial()));
    std::filesystem::create_directories(dir_);
    write("server.ext",
          "basicConstraints=CA:FALSE\n"
          "keyUsage=digitalSignature,keyEncipherment\n"
          "extendedKeyUsage=serverAuth\n"
          "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n");
    write("client.ext",
          "basicConstraints=CA:FALSE\n"
          "keyUsage=digitalSignature,keyEncipherment\n"
          "extendedKeyUsage=clientAuth\n");
    make_ca("ca");
    make_ca("other-ca");
    make_leaf("server", "localhost", "ca", "server.ext");
    make_leaf("client", "test-client", "ca", "client.ext");
    make_leaf("other-server", "localhost", "other-ca", "server.ext");
    make_leaf("other-client", "test-client", "other-ca", "client.ext");
  }
  ~TlsCerts() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  TlsCerts(const TlsCerts&) = delete;
  TlsCerts& operator=(const TlsCerts&) = delete;

  /// The path of a file in the directory: "ca.pem", "server.key", "client.pem" ...
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  /// True if every openssl command succeeded.
  bool ok() const { return ok_; }
  /// What the openssl commands printed.
  std::string log() const {
    std::ifstream in(dir_ / "openssl.log");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  static int& serial() {
    static int n = 0;
    return n;
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  void openssl(const std::string& args) {
    const std::string command = "openssl " + args + " >>'" + path("openssl.log") + "' 2>&1";
    if (std::system(command.c_str()) != 0) {
      ok_ = false;
    }
  }
  std::string q(const std::string& name) const { return "'" + path(name) + "'"; }
  // P-256 keys: quick to make, unlike RSA.
  void make_ca(const std::string& name) {
    openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=" +
            name + " -keyout " + q(name + ".key") + " -out " + q(name + ".pem"));
  }
  void make_leaf(const std::string& name, const std::string& cn, const std::string& ca,
                 const std::string& ext) {
    openssl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=" + cn + " -keyout " +
            q(name + ".key") + " -out " + q(name + ".csr"));
    openssl("x509 -req -days 2 -in " + q(name + ".csr") + " -CA " + q(ca + ".pem") + " -CAkey " +
            q(ca + ".key") + " -CAcreateserial -extfile " + q(ext) + " -out " + q(name + ".pem"));
  }

  std::filesystem::path dir_;
  bool ok_ = true;
};

}  // namespace serialserver::test
