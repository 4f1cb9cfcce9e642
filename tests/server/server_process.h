// The real `alignserve serve` binary as a child process for end-to-end
// tests: started on port 0, its port read from its start-up line, its
// stderr kept, stopped with a signal and its exit code returned. Options:
// extra environment variables for the child (ALIGNSERVE_FAULT_INJECT), and
// returning as soon as the HTTP port is known instead of once the model is
// ready (to watch /ready during the load).
#ifndef ALIGNSERVE_TESTS_SERVER_SERVER_PROCESS_H_
#define ALIGNSERVE_TESTS_SERVER_SERVER_PROCESS_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace alignserve::testing {

struct ServerProcessOptions {
  std::vector<std::pair<std::string, std::string>> env;  // set in the child
  bool wait_for_ready = true;  // false: return once the HTTP port is known
  int timeout_s = 120;
};

class ServerProcess {
 public:
  // Runs `alignserve serve --port 0 ARGS...` and waits (up to timeout_s)
  // for its "ready" line. ok() tells whether it came up.
  explicit ServerProcess(const std::vector<std::string>& args, int timeout_s = 120)
      : ServerProcess(
            args, ServerProcessOptions{.env = {}, .wait_for_ready = true, .timeout_s = timeout_s}) {
  }
  ServerProcess(const std::vector<std::string>& args, const ServerProcessOptions& options) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
      for (const auto& [name, value] : options.env) setenv(name.c_str(), value.c_str(), 1);
      dup2(pipe_fds[1], STDERR_FILENO);
      close(pipe_fds[0]);
      std::vector<std::string> argv_s = {std::string(ALIGNSERVE_BINARY_DIR) + "/alignserve",
                                         "serve", "--port", "0"};
      argv_s.insert(argv_s.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (std::string& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(pipe_fds[1]);
    fd_ = pipe_fds[0];
    fcntl(fd_, F_SETFL, O_NONBLOCK);
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(options.timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      Pump(options.wait_for_ready ? 100 : 5);
      const size_t at = log_.find("listening on http://127.0.0.1:");
      // Only a whole line: a read may end inside the port number.
      if (port_ == 0 && at != std::string::npos && log_.find('\n', at) != std::string::npos) {
        port_ = static_cast<uint16_t>(std::atoi(log_.c_str() + at + 30));
      }
      if (!options.wait_for_ready && port_ != 0) break;
      if (log_.find("ready:") != std::string::npos || exited_) break;
    }
  }
  // Waits up to timeout_s for the "ready" line; returns ok().
  bool WaitReady(int timeout_s = 120) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (!ok() && !exited_ && std::chrono::steady_clock::now() < deadline) Pump(50);
    return ok();
  }
  ~ServerProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }

  bool ok() const { return port_ != 0 && !exited_ && log_.find("ready:") != std::string::npos; }
  uint16_t port() const { return port_; }
  // The gRPC port from the "gRPC on HOST:PORT" start-up line (pass
  // --grpc-port 0 for a free one); 0 when the server printed none.
  uint16_t grpc_port() {
    const std::string& log_text = log();
    const size_t at = log_text.find("gRPC on ");
    if (at == std::string::npos) return 0;
    const size_t colon = log_text.find_first_of(":\n", at + 8);
    if (colon == std::string::npos || log_text[colon] != ':') return 0;
    return static_cast<uint16_t>(std::atoi(log_text.c_str() + colon + 1));
  }
  // Everything the server wrote to stderr so far.
  const std::string& log() {
    Pump(0);
    return log_;
  }
  // Sends `sig` and waits up to timeout_s for the exit; returns the exit
  // code, or -1 if it did not exit (it is then killed).
  int Stop(int sig = SIGTERM, int timeout_s = 30) {
    kill(pid_, sig);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (!exited_ && std::chrono::steady_clock::now() < deadline) {
      Pump(50);
      Reap();
    }
    if (!exited_) return -1;
    Pump(0);
    return exit_code_;
  }

 private:
  void Pump(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd_, buf, sizeof(buf))) > 0) log_.append(buf, static_cast<size_t>(n));
    if (n == 0) Reap();
  }
  // Collects the exit status once the child has ended (exactly once).
  void Reap() {
    int status = 0;
    if (exited_ || waitpid(pid_, &status, WNOHANG) != pid_) return;
    exited_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  uint16_t port_ = 0;
  bool exited_ = false;
  int exit_code_ = -1;
  std::string log_;
};

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_SERVER_SERVER_PROCESS_H_
