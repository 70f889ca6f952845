// Child processes for integration tests: the real tagcache-server (started
// on 127.0.0.1, stopped by its pid) and one-shot runs of tagctl. Every wait
// is bounded; only processes started here are ever signalled.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tagcache::testing {

// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class ServerProcess {
 public:
  // Starts `binary` --listen 127.0.0.1:PORT (0: any free port) with a port
  // file and data dir under `dir` (or `data_dir` when given) plus
  // `extra_args`, and waits up to `wait` for the port file.
  // Null (with a gtest failure recorded) when it does not come up.
  static std::unique_ptr<ServerProcess> Start(
      const std::string& binary, const std::string& dir, uint16_t port = 0,
      const std::vector<std::string>& extra_args = {}, const std::string& data_dir = "",
      std::chrono::milliseconds wait = std::chrono::milliseconds(10000));
  // Kills (SIGKILL) the server if it still runs.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return pid_; }

  // SIGTERM, then waits up to `limit` (SIGKILL after it). The exit code, or
  // -1 when it had to be killed or died of a signal.
  int Terminate(std::chrono::milliseconds limit = std::chrono::milliseconds(10000));
  // SIGKILL and reap.
  void Kill();
  // What the server wrote to stderr (its log), for failure messages.
  std::string Log() const;

 private:
  ServerProcess(pid_t pid, uint16_t port, std::string log_path)
      : pid_(pid), port_(port), log_path_(std::move(log_path)) {}
  pid_t pid_;
  uint16_t port_;
  std::string log_path_;
};

struct RunResult {
  int exit_code = -1;  // -1: killed after the time limit or by a signal
  std::string out;
  std::string err;
};

// Runs `binary` with `args`, capturing stdout and stderr, for at most `limit`.
// Its stdin is `stdin_path` (default /dev/null).
RunResult RunProgram(const std::string& binary, const std::vector<std::string>& args,
                     std::chrono::milliseconds limit = std::chrono::milliseconds(20000),
                     const std::string& stdin_path = "/dev/null");

// A long-running program other than the server (e.g. tagcache-kafka):
// started with stdin /dev/null and stdout/stderr to files under `dir`,
// signalled and reaped only by this object.
class ChildProcess {
 public:
  // Null (with a gtest failure recorded) when it cannot be spawned.
  static std::unique_ptr<ChildProcess> Start(const std::string& binary,
                                             const std::vector<std::string>& args,
                                             const std::string& dir);
  // Kills (SIGKILL) the program if it still runs.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // True while the program has not exited.
  bool Running();
  // SIGTERM, then waits up to `limit` (SIGKILL after it). The exit code, or
  // -1 when it had to be killed or died of a signal.
  int Terminate(std::chrono::milliseconds limit = std::chrono::milliseconds(10000));
  // SIGKILL and reap.
  void Kill();
  // Waits up to `limit` for the program to exit by itself; its exit code,
  // or nullopt if it still runs.
  std::optional<int> Wait(std::chrono::milliseconds limit);
  std::string Out() const;
  std::string Err() const;

 private:
  ChildProcess(pid_t pid, std::string out, std::string err)
      : pid_(pid), out_path_(std::move(out)), err_path_(std::move(err)) {}
  pid_t pid_;
  int exit_code_ = -1;
  std::string out_path_;
  std::string err_path_;
};

// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed).
uint16_t UnusedPort();

// The whole content of a file ("" when it cannot be read).
std::string ReadFile(const std::string& path);

}  // namespace tagcache::testing
