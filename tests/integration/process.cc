#include "process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

extern char** environ;

namespace tagcache::testing {
namespace {

using Steady = std::chrono::steady_clock;

// Spawns binary+args with stdout/stderr redirected to files. -1 on failure.
pid_t Spawn(const std::string& binary, const std::vector<std::string>& args,
            const std::string& out_path, const std::string& err_path,
            const std::string& in_path = "/dev/null") {
  std::vector<std::string> storage;
  storage.push_back(binary);
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, in_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

// Waits for `pid` up to `limit`; the raw wait status, or nullopt if it runs on.
std::optional<int> WaitFor(pid_t pid, std::chrono::milliseconds limit) {
  const auto end = Steady::now() + limit;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    if (Steady::now() >= end) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int ExitCode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "tagcache-it-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::unique_ptr<ServerProcess> ServerProcess::Start(const std::string& binary,
                                                    const std::string& dir, uint16_t port,
                                                    const std::vector<std::string>& extra_args,
                                                    const std::string& data_dir,
                                                    std::chrono::milliseconds wait) {
  static int serial = 0;
  const std::string tag = std::to_string(++serial);
  const std::string port_file = dir + "/port." + tag;
  const std::string log = dir + "/server." + tag + ".log";
  std::error_code ec;
  std::filesystem::remove(port_file, ec);
  std::vector<std::string> args = {"--listen",   "127.0.0.1:" + std::to_string(port),
                                   "--port-file", port_file,
                                   "--data-dir", data_dir.empty() ? dir + "/data" : data_dir,
                                   "--log-level", "warn"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  const pid_t pid = Spawn(binary, args, dir + "/server." + tag + ".out", log);
  if (pid < 0) {
    ADD_FAILURE() << "cannot start " << binary;
    return nullptr;
  }
  // Bounded: `wait`, and one poll per 5 ms of it.
  const auto end = Steady::now() + wait;
  const int64_t polls = wait.count() / 5 + 1;
  for (int64_t i = 0; i < polls && Steady::now() < end; ++i) {
    const std::string text = ReadFile(port_file);
    if (!text.empty() && text.back() == '\n') {
      return std::unique_ptr<ServerProcess>(
          new ServerProcess(pid, static_cast<uint16_t>(std::stoul(text)), log));
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      ADD_FAILURE() << "tagcache-server exited early (code " << ExitCode(status)
                    << "): " << ReadFile(log);
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  WaitFor(pid, std::chrono::seconds(5));
  ADD_FAILURE() << "tagcache-server wrote no port file within " << wait.count()
                << " ms: " << ReadFile(log);
  return nullptr;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Kill();
}

int ServerProcess::Terminate(std::chrono::milliseconds limit) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  std::optional<int> status = WaitFor(pid_, limit);
  if (!status) {
    Kill();
    return -1;
  }
  pid_ = -1;
  return ExitCode(*status);
}

void ServerProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  WaitFor(pid_, std::chrono::seconds(10));
  pid_ = -1;
}

std::string ServerProcess::Log() const { return ReadFile(log_path_); }

RunResult RunProgram(const std::string& binary, const std::vector<std::string>& args,
                     std::chrono::milliseconds limit, const std::string& stdin_path) {
  TempDir dir;
  const std::string out = dir.path() + "/out", err = dir.path() + "/err";
  RunResult result;
  const pid_t pid = Spawn(binary, args, out, err, stdin_path);
  if (pid < 0) {
    result.err = "cannot start " + binary;
    return result;
  }
  std::optional<int> status = WaitFor(pid, limit);
  if (!status) {
    ::kill(pid, SIGKILL);
    WaitFor(pid, std::chrono::seconds(10));
  } else {
    result.exit_code = ExitCode(*status);
  }
  result.out = ReadFile(out);
  result.err = ReadFile(err);
  return result;
}

std::unique_ptr<ChildProcess> ChildProcess::Start(const std::string& binary,
                                                  const std::vector<std::string>& args,
                                                  const std::string& dir) {
  static int serial = 0;
  const std::string tag = std::to_string(++serial);
  const std::string out = dir + "/child." + tag + ".out", err = dir + "/child." + tag + ".err";
  const pid_t pid = Spawn(binary, args, out, err);
  if (pid < 0) {
    ADD_FAILURE() << "cannot start " << binary;
    return nullptr;
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, out, err));
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) Kill();
}

bool ChildProcess::Running() {
  if (pid_ <= 0) return false;
  return !Wait(std::chrono::milliseconds(0)).has_value();
}

std::optional<int> ChildProcess::Wait(std::chrono::milliseconds limit) {
  if (pid_ <= 0) return exit_code_;
  std::optional<int> status = WaitFor(pid_, limit);
  if (!status) return std::nullopt;
  pid_ = -1;
  exit_code_ = ExitCode(*status);
  return exit_code_;
}

int ChildProcess::Terminate(std::chrono::milliseconds limit) {
  if (pid_ <= 0) return exit_code_;
  ::kill(pid_, SIGTERM);
  std::optional<int> code = Wait(limit);
  if (!code) {
    Kill();
    return -1;
  }
  return *code;
}

void ChildProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  WaitFor(pid_, std::chrono::seconds(10));
  pid_ = -1;
  exit_code_ = -1;
}

std::string ChildProcess::Out() const { return ReadFile(out_path_); }
std::string ChildProcess::Err() const { return ReadFile(err_path_); }

uint16_t UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace tagcache::testing
