// An exclusive lock on `<path>.lock`, held for the lifetime of the object, as trtexec guards its
// timing-cache file (shared/utils/fileLock.cpp). flock() excludes other processes and, since
// each lock opens the file anew, other threads of this process too; the kernel drops it when a
// holder dies, so a crash never leaves it taken. The lock file itself is never removed (removing
// it would let two holders lock two different files). A lock file another user created, which
// this one may not write, is opened read-only: local flock() needs no write access. (On NFS,
// where Linux takes flock() as an fcntl lock, an exclusive lock needs a writable descriptor:
// hence read-write first.)
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace fm::trt {

class FileLock {
 public:
  // Blocks until the lock is held, or fails (held() false, error() says why).
  explicit FileLock(const std::string& path) {
    const std::string file = path + ".lock";
    fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    int err = errno;
    if (fd_ < 0 && (err == EACCES || err == EROFS)) {
      fd_ = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd_ < 0 && errno != ENOENT) err = errno;  // absent: the first error (no right to create it) says why
    }
    if (fd_ < 0) {
      error_ = "cannot open " + file + ": " + std::strerror(err);
      return;
    }
    int r;
    do r = ::flock(fd_, LOCK_EX);
    while (r != 0 && errno == EINTR);
    if (r != 0) {
      error_ = "cannot lock " + file + ": " + std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the lock
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  bool held() const { return fd_ >= 0; }
  const std::string& error() const { return error_; }

 private:
  int fd_ = -1;
  std::string error_;
};

}  // namespace fm::trt
