#include "database_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace logd {

DatabaseLock::DatabaseLock(const std::string& path) {
  if (path.empty()) {
    return;
  }
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    throw std::system_error(errno, std::generic_category(), "cannot open " + path + " to lock it");
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd_);
    fd_ = -1;
    if (error == EWOULDBLOCK) {
      throw DatabaseInUse(path +
                          " is in use by another serialserver-logd: run one server per database "
                          "file");
    }
    throw std::system_error(error, std::generic_category(), "cannot lock " + path);
  }
}

DatabaseLock::~DatabaseLock() {
  if (fd_ >= 0) {
    ::close(fd_);  // releases the flock
  }
}

}  // namespace logd
