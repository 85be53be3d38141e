// Runs a program for CLI tests: captures stdout and stderr, feeds stdin, returns
// the exit status. Header-only; used by tests of the apps.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

namespace corvid_test {

struct ProcessResult {
  int exit_code = -1;   // -1 if killed by a signal
  int signal = 0;       // the signal, if any
  std::string out, err;
};

inline ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input = "",
                                 const std::vector<std::string>& extra_env = {}) {
  int in_p[2], out_p[2], err_p[2];
  if (pipe(in_p) || pipe(out_p) || pipe(err_p)) return {};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in_p[0], 0);
    dup2(out_p[1], 1);
    dup2(err_p[1], 2);
    for (int fd : {in_p[0], in_p[1], out_p[0], out_p[1], err_p[0], err_p[1]}) close(fd);
    for (const auto& e : extra_env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in_p[0]);
  close(out_p[1]);
  close(err_p[1]);
  signal(SIGPIPE, SIG_IGN);
  size_t written = 0;
  if (input.empty()) { close(in_p[1]); in_p[1] = -1; }
  ProcessResult r;
  bool out_open = true, err_open = true;
  char buf[65536];
  while (out_open || err_open) {
    std::vector<pollfd> fds;
    if (out_open) fds.push_back({out_p[0], POLLIN, 0});
    if (err_open) fds.push_back({err_p[0], POLLIN, 0});
    if (in_p[1] >= 0) fds.push_back({in_p[1], POLLOUT, 0});
    if (poll(fds.data(), fds.size(), 120000) <= 0) break;
    for (auto& f : fds) {
      if (!f.revents) continue;
      if (f.fd == in_p[1]) {
        ssize_t n = write(in_p[1], input.data() + written, input.size() - written);
        if (n > 0) written += size_t(n);
        if (n < 0 || written == input.size()) { close(in_p[1]); in_p[1] = -1; }
        continue;
      }
      ssize_t n = read(f.fd, buf, sizeof buf);
      if (n <= 0) {
        if (f.fd == out_p[0]) out_open = false; else err_open = false;
      } else {
        (f.fd == out_p[0] ? r.out : r.err).append(buf, size_t(n));
      }
    }
  }
  if (in_p[1] >= 0) close(in_p[1]);
  close(out_p[0]);
  close(err_p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

}  // namespace corvid_test
