// The timing-cache file lock (tensorrt/file_lock.h) excludes another thread of this process and
// another process, is released when its holder dies, and says why when it cannot be taken.
#include "tensorrt/file_lock.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "test_support.h"

using fm::trt::FileLock;
using fm_test::check;

namespace {

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void threads(const std::string& path) {
  std::atomic<int> state{0};  // 1: the first holder has the lock, 2: it is about to release it
  std::thread first([&] {
    FileLock lock(path);
    state = 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    state = 2;
  });
  while (state.load() == 0) std::this_thread::yield();
  int seen = -1;
  {
    FileLock second(path);
    seen = state.load();
    check(second.held(), "threads: the second lock is taken once the first is released", second.error());
  }
  first.join();
  check(seen == 2, "threads: the second lock waits for the first", "state when taken: " + std::to_string(seen));
}

// A child takes the lock, says so through a pipe, and then dies holding it (abort) or touches
// `marker` and exits normally; the parent's lock must wait for that.
void processes(const std::string& path, const std::string& marker, bool crash) {
  int fds[2];
  if (::pipe(fds) != 0) {
    check(false, "processes: pipe");
    return;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    FileLock lock(path);
    const char c = lock.held() ? 'y' : 'n';
    if (::write(fds[1], &c, 1) != 1) ::_exit(3);
    ::usleep(200 * 1000);
    if (crash) {
      ::signal(SIGABRT, SIG_DFL);
      ::abort();
    }
    FILE* f = std::fopen(marker.c_str(), "w");
    if (f != nullptr) std::fclose(f);
    ::_exit(0);
  }
  ::close(fds[1]);
  char c = 0;
  const bool said = ::read(fds[0], &c, 1) == 1 && c == 'y';
  ::close(fds[0]);
  check(said, std::string("processes: the child holds the lock") + (crash ? " (crash)" : ""));
  {
    FileLock lock(path);
    check(lock.held(), "processes: taken after the child", lock.error());
    if (!crash) check(exists(marker), "processes: the lock waited for the child to finish");
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (crash) check(WIFSIGNALED(status), "processes: the child died holding the lock, and it was released");
}

// Another user sharing the folder: the lock file is theirs and read-only to this one (made so by
// mode 0444 here; as root, which ignores modes, the child takes the lock as user nobody).
void another_user(const std::string& dir, const std::string& path) {
  ::chmod((path + ".lock").c_str(), 0444);
  ::chmod(dir.c_str(), 0755);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(77);
    FileLock lock(path);
    if (!lock.held()) std::printf("  %s\n", lock.error().c_str());
    std::fflush(stdout);  // _exit() does not flush
    ::_exit(lock.held() ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::chmod((path + ".lock").c_str(), 0644);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
    std::printf("SKIPPED another user: cannot become uid 65534 here\n");
    return;
  }
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "another user locks the lock file it cannot write");
}

// A folder this user may not write, without the lock file: the error says so (not "no such file",
// from the read-only retry).
void no_right_to_create(const std::string& dir) {
  const std::string sub = dir + "/read-only";
  ::mkdir(sub.c_str(), 0555);
  ::chmod(sub.c_str(), 0555);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(77);
    FileLock lock(sub + "/timing.cache");
    std::printf("  %s\n", lock.error().c_str());
    std::fflush(stdout);
    ::_exit(!lock.held() && lock.error().find("Permission denied") != std::string::npos ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::rmdir(sub.c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
    std::printf("SKIPPED no right to create: cannot become uid 65534 here\n");
    return;
  }
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a folder it may not write: the error says permission denied");
}

}  // namespace

int main() {
  char dir_template[] = "/tmp/fm-file-lock-XXXXXX";
  const char* dir = ::mkdtemp(dir_template);
  if (dir == nullptr) {
    std::printf("FAIL mkdtemp\n");
    return 1;
  }
  const std::string path = std::string(dir) + "/timing.cache";
  threads(path);
  processes(path, std::string(dir) + "/marker", false);
  processes(path, std::string(dir) + "/marker-crash", true);
  check(exists(path + ".lock"), "the lock file stays");
  another_user(dir, path);
  no_right_to_create(dir);

  FileLock nowhere(std::string(dir) + "/missing/timing.cache");
  check(!nowhere.held() && nowhere.error().find("missing/timing.cache.lock") != std::string::npos,
        "an impossible lock says which file", nowhere.error());

  ::unlink((path + ".lock").c_str());
  ::unlink((std::string(dir) + "/marker").c_str());
  ::rmdir(dir);
  std::printf("file_lock: %d passed, %d failed\n", fm_test::g_passed, fm_test::g_failed);
  return fm_test::g_failed == 0 ? 0 : 1;
}
