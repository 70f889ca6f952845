// Authentication and TLS against the real tagcache-server and tagctl
// (docs/SECURITY.md): the auth file made with `tagctl auth hash-token`,
// tokens from --token, --token-file and TAGCACHE_TOKEN, a SIGHUP reload,
// TLS with certificates made at test time, and node-to-node authentication
// of the background repair pass.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/scoped_env.h"
#include "common/test_certs.h"
#include "server_fixture.h"

namespace tagcache::testing {
namespace {

using std::chrono::milliseconds;

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// Polls `done` every 50 ms for at most `limit`; true once it holds.
bool Eventually(const std::function<bool()>& done, milliseconds limit = milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return false;
}

class SecurityTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (auto& server : servers_) {
      const std::string log = server->Log();
      EXPECT_EQ(server->Terminate(), 0) << "tagcache-server log:\n" << log;
    }
  }

  // The line for an auth file: ROLE:HASH, the hash made by tagctl from
  // the token on its stdin (with a trailing newline, as `echo` writes it).
  std::string AuthLine(const std::string& role, const std::string& token) {
    const std::string in = dir_.path() + "/token-stdin";
    WriteText(in, token + "\n");
    RunResult run = RunProgram(TagctlBinary(), {"auth", "hash-token"}, milliseconds(20000), in);
    EXPECT_EQ(run.exit_code, 0) << run.err;
    std::string hash = run.out;
    while (!hash.empty() && hash.back() == '\n') hash.pop_back();
    EXPECT_EQ(hash.size(), 64u) << run.out;
    return role + ":" + hash + "\n";
  }

  ServerProcess& StartServer(const std::vector<std::string>& args, const std::string& name) {
    auto server =
        ServerProcess::Start(ServerBinary(), dir_.path(), 0, args, dir_.path() + "/data-" + name);
    EXPECT_NE(server, nullptr);
    servers_.push_back(std::move(server));
    return *servers_.back();
  }

  RunResult Tagctl(const ServerProcess& server, std::vector<std::string> args) {
    args.insert(args.begin(), {"--seeds", server.address(), "--timeout", "5000"});
    return RunProgram(TagctlBinary(), args);
  }

  TempDir dir_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;
};

TEST_F(SecurityTest, HashTokenPrintsTheSha256OfStdin) {
  const std::string in = dir_.path() + "/stdin";
  WriteText(in, "abc\n");
  RunResult run = RunProgram(TagctlBinary(), {"auth", "hash-token"}, milliseconds(20000), in);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  // FIPS 180-2's SHA-256("abc"): the newline is not part of the token.
  EXPECT_EQ(run.out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n");
  WriteText(in, "\n");
  run = RunProgram(TagctlBinary(), {"auth", "hash-token"}, milliseconds(20000), in);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("empty"), std::string::npos) << run.err;
}

TEST_F(SecurityTest, TagctlTakesItsTokenFromFlagFileOrEnvironment) {
  const std::string auth = dir_.path() + "/auth";
  WriteText(auth, AuthLine("write", "w-token") + AuthLine("read", "r-token"));
  ServerProcess& server = StartServer({"--auth-file", auth}, "n1");
  ASSERT_FALSE(HasFailure());
  const std::string token_file = dir_.path() + "/r.token";
  WriteText(token_file, "r-token\n");

  RunResult set = Tagctl(server, {"--token", "w-token", "set", "42", "apple_fan", "--ts", "1000"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  RunResult get = Tagctl(server, {"get", "42", "--token-file", token_file});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "apple_fan\n");
  {
    ScopedEnv env("TAGCACHE_TOKEN", "r-token");
    get = Tagctl(server, {"get", "42"});
    ASSERT_EQ(get.exit_code, 0) << get.err;
    EXPECT_EQ(get.out, "apple_fan\n");
    // The flag wins over the environment: the write token cannot read.
    get = Tagctl(server, {"get", "42", "--token", "w-token"});
    EXPECT_EQ(get.exit_code, 1);
    EXPECT_NE(get.err.find("UNAUTHORIZED"), std::string::npos) << get.err;
    EXPECT_NE(get.err.find("'read' role"), std::string::npos) << get.err;
  }
  ScopedEnv no_env("TAGCACHE_TOKEN", nullptr);
  RunResult none = Tagctl(server, {"get", "42"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("UNAUTHORIZED"), std::string::npos) << none.err;
  RunResult wrong = Tagctl(server, {"get", "42", "--token", "guess"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("not accepted"), std::string::npos) << wrong.err;
  RunResult both = Tagctl(server, {"get", "42", "--token", "r-token", "--token-file", token_file});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.err.find("not both"), std::string::npos) << both.err;
}

TEST_F(SecurityTest, SighupReloadsTheAuthFile) {
  const std::string auth = dir_.path() + "/auth";
  WriteText(auth, AuthLine("admin", "old-admin"));
  ServerProcess& server = StartServer({"--auth-file", auth}, "n1");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(Tagctl(server, {"--token", "old-admin", "stats"}).exit_code, 0);

  WriteText(auth, AuthLine("admin", "new-admin"));
  ASSERT_EQ(::kill(server.pid(), SIGHUP), 0);
  EXPECT_TRUE(Eventually([&] {
    return Tagctl(server, {"--token", "new-admin", "ping"}).exit_code == 0;
  })) << server.Log();
  RunResult old = Tagctl(server, {"--token", "old-admin", "ping"});
  EXPECT_EQ(old.exit_code, 1);
  EXPECT_NE(old.err.find("UNAUTHORIZED"), std::string::npos) << old.err;

  // A broken file on reload keeps the tokens in force, and says why.
  WriteText(auth, "admin:not-a-hash\n");
  ASSERT_EQ(::kill(server.pid(), SIGHUP), 0);
  EXPECT_TRUE(Eventually([&] { return server.Log().find("reload failed") != std::string::npos; }))
      << server.Log();
  EXPECT_NE(server.Log().find(auth + ":1:"), std::string::npos);
  EXPECT_EQ(Tagctl(server, {"--token", "new-admin", "ping"}).exit_code, 0);
}

TEST_F(SecurityTest, BadAuthFileStopsTheServerNamingTheLine) {
  const std::string auth = dir_.path() + "/auth";
  WriteText(auth, "# ok\nread:zz\n");
  RunResult run = RunProgram(ServerBinary(),
                             {"--listen", "127.0.0.1:0", "--data-dir", "", "--auth-file", auth});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find(auth + ":2:"), std::string::npos) << run.err;
}

TEST_F(SecurityTest, WithoutAuthFileTheServerSaysItStaysOnLoopback) {
  const std::string port_file = dir_.path() + "/port";
  auto child = ChildProcess::Start(ServerBinary(),
                                   {"--listen", "0.0.0.0:0", "--data-dir", "", "--port-file",
                                    port_file, "--repair-interval-s", "0"},
                                   dir_.path());
  ASSERT_NE(child, nullptr);
  ASSERT_TRUE(Eventually([&] { return !ReadFile(port_file).empty(); })) << child->Err();
  EXPECT_NE(child->Out().find("listening on 127.0.0.1:"), std::string::npos) << child->Out();
  EXPECT_NE(child->Err().find("loopback only"), std::string::npos) << child->Err();
  EXPECT_EQ(child->Terminate(), 0);
}

TEST_F(SecurityTest, TagctlSpeaksTls) {
  TestCerts certs;
  ASSERT_TRUE(MakeTestCerts(dir_.path(), certs));
  ServerProcess& server =
      StartServer({"--tls-cert", certs.server_cert, "--tls-key", certs.server_key}, "tls");
  ASSERT_FALSE(HasFailure());
  RunResult set = Tagctl(server, {"--tls", "--tls-ca", certs.ca, "set", "7", "t", "--ts", "5"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  RunResult get = Tagctl(server, {"--tls", "--tls-ca", certs.ca, "get", "7"});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "t\n");
  RunResult plain = Tagctl(server, {"get", "7"});
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_NE(plain.err.find("TLS port"), std::string::npos) << plain.err;
  RunResult untrusted = Tagctl(server, {"--tls", "--tls-ca", certs.other_ca, "get", "7"});
  EXPECT_EQ(untrusted.exit_code, 1);
  EXPECT_NE(untrusted.err.find("TLS handshake"), std::string::npos) << untrusted.err;
  RunResult usage = Tagctl(server, {"--tls", "get", "7"});
  EXPECT_EQ(usage.exit_code, 2);
}

// Two nodes with authentication: the data written to n1 alone before the
// cluster exists reaches n2 through n2's background repair pass, which
// authenticates with --peer-token-file (an admin token on every node).
class PeerAuthTest : public SecurityTest {
 protected:
  struct Pair {
    ServerProcess* n1 = nullptr;
    ServerProcess* n2 = nullptr;
  };
  Pair StartPair(const std::string& peer_role, const std::vector<std::string>& extra = {}) {
    const std::string auth = dir_.path() + "/auth";
    WriteText(auth, AuthLine("admin", "operator") + AuthLine("write", "writer") +
                        AuthLine(peer_role, "peer-secret"));
    const std::string peer = dir_.path() + "/peer.token";
    WriteText(peer, "peer-secret\n");
    std::vector<std::string> args = {"--auth-file",         auth, "--peer-token-file", peer,
                                     "--repair-interval-s", "1",  "--shard-bits",      "16"};
    args.insert(args.end(), extra.begin(), extra.end());
    Pair p;
    p.n1 = &StartServer(args, "n1");
    p.n2 = &StartServer(args, "n2");
    return p;
  }

  client::ClientOptions Admin(const std::string& seed) {
    client::ClientOptions o;
    o.seeds = {seed};
    o.connect_timeout = milliseconds(2000);
    o.request_timeout = milliseconds(10000);
    o.token = "operator";
    o.tls = tls_;
    return o;
  }

  // Writes users 0..99 to n1 while it is standalone, then makes n1 and n2
  // one cluster with two replicas of every shard.
  void SeedAndInit(const Pair& p) {
    client::ClientOptions w = Admin(p.n1->address());
    w.token = "writer";
    auto c = client::Client::Connect(w);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    std::vector<client::Event> events;
    for (uint64_t u = 0; u < 100; ++u) events.push_back({u, "seeded", client::TagOp::kSet, 1000});
    ASSERT_TRUE((*c)->ApplyEvents(events).ok());
    std::vector<std::string> args = {
        "--token",    "operator", "cluster",
        "init",       "--nodes",  "n1=" + p.n1->address() + ",n2=" + p.n2->address(),
        "--replicas", "2"};
    args.insert(args.end(), tagctl_tls_.begin(), tagctl_tls_.end());
    RunResult init = Tagctl(*p.n1, args);
    ASSERT_EQ(init.exit_code, 0) << init.err;
  }

  // The number of assignments n2 holds (-1 when it cannot be asked).
  int64_t N2Assignments(const Pair& p) {
    auto c = client::Client::Connect(Admin(p.n1->address()));
    if (!c.ok()) return -1;
    auto stats = (*c)->NodeStatsOf(p.n2->address());
    return stats.ok() ? static_cast<int64_t>(stats->assignments) : -1;
  }

  client::ClientOptions::Tls tls_;       // the test's clients
  std::vector<std::string> tagctl_tls_;  // and tagctl's flags
};

TEST_F(PeerAuthTest, RepairPassAuthenticatesWithThePeerToken) {
  Pair p = StartPair("admin");
  ASSERT_FALSE(HasFailure());
  SeedAndInit(p);
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(Eventually([&] { return N2Assignments(p) == 100; }, milliseconds(30000)))
      << "n2 holds " << N2Assignments(p) << " assignments\nn2 log:\n"
      << p.n2->Log();
}

// The same over TLS with client certificates required: the pass verifies
// its peers with --peer-tls-ca and presents the node's own certificate.
TEST_F(PeerAuthTest, RepairPassOverTlsWithClientCertificates) {
  TestCerts certs;
  ASSERT_TRUE(MakeTestCerts(dir_.path(), certs));
  tls_.enabled = true;
  tls_.ca_file = certs.ca;
  tls_.cert_file = certs.client_cert;
  tls_.key_file = certs.client_key;
  tagctl_tls_ = {"--tls",           "--tls-ca",  certs.ca,        "--tls-cert",
                 certs.client_cert, "--tls-key", certs.client_key};
  Pair p = StartPair("admin", {"--tls-cert", certs.server_cert, "--tls-key", certs.server_key,
                               "--tls-client-ca", certs.ca, "--peer-tls-ca", certs.ca});
  ASSERT_FALSE(HasFailure());
  SeedAndInit(p);
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(Eventually([&] { return N2Assignments(p) == 100; }, milliseconds(30000)))
      << "n2 holds " << N2Assignments(p) << " assignments\nn2 log:\n"
      << p.n2->Log();
}

TEST_F(PeerAuthTest, RepairPassWithoutTheAdminRoleFailsCleanly) {
  Pair p = StartPair("read");
  ASSERT_FALSE(HasFailure());
  SeedAndInit(p);
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(
      Eventually([&] { return p.n2->Log().find("repair pass: UNAUTHORIZED") != std::string::npos; },
                 milliseconds(30000)))
      << p.n2->Log();
  EXPECT_EQ(N2Assignments(p), 0);
}

}  // namespace
}  // namespace tagcache::testing
