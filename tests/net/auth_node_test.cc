// Authentication and roles on a real in-process node (docs/SECURITY.md):
// every request kind sent with a token of every role, over raw frames, is
// answered UNAUTHORIZED exactly when the role does not allow it, and the
// connection stays usable; hellos without or with a wrong token are refused
// and closed; a reload revokes and grants; a node without an auth file keeps
// to loopback; the client library carries its token.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/temp_dir.h"
#include "net/raw_client.h"
#include "net/running_node.h"
#include "tagcache/net/node.h"
#include "tagcache/protocol/bitmap.h"
#include "tagcache/security/auth.h"

namespace tagcache::net {
namespace {

using std::chrono::milliseconds;

// One token per role, and one holding two roles.
constexpr const char* kReadToken = "tok-read-0123";
constexpr const char* kExportToken = "tok-export-4567";
constexpr const char* kWriteToken = "tok-write-89ab";
constexpr const char* kAdminToken = "tok-admin-cdef";

std::string AuthFileText() {
  using security::HashTokenHex;
  return "# test tokens\n"
         "read:" +
         HashTokenHex(kReadToken) + "\n" + "export:" + HashTokenHex(kExportToken) + "\n" +
         "write:" + HashTokenHex(kWriteToken) + "\n" + "admin:" + HashTokenHex(kAdminToken) + "\n";
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

std::vector<uint8_t> HelloWithToken(uint64_t id, const std::string& token) {
  return RequestFrame(id, [&](wire::Request::Builder r) {
    auto h = r.initHello();
    h.setVersion(protocol::kProtocolVersion);
    h.setClient("auth_node_test");
    if (!token.empty()) h.setToken(token);
  });
}

// The access table as docs/SECURITY.md states it, written out here
// independently of the node's own table: which role each kind needs ("" =
// any authenticated connection).
struct KindCase {
  const char* name;
  const char* role;
  Fill fill;
};

std::vector<KindCase> Kinds() {
  const std::string bitmap = [] {
    Roaring r;
    r.add(3);
    return protocol::WritePortableBitmap(r);
  }();
  auto bytes = [](const std::string& s) {
    return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
  };
  return {
      {"ping", "", [](wire::Request::Builder r) { r.setPing(); }},
      {"getClusterMap", "", [](wire::Request::Builder r) { r.setGetClusterMap(); }},
      {"getTags", "read", [](wire::Request::Builder r) { r.initGetTags().setUser(7); }},
      {"hasTags", "read",
       [](wire::Request::Builder r) {
         auto h = r.initHasTags();
         h.setUser(7);
         h.initTags(1).set(0, "a");
       }},
      {"getTagsBatch", "read",
       [](wire::Request::Builder r) { r.initGetTagsBatch().initUsers(2).set(0, 7); }},
      {"count", "read", [](wire::Request::Builder r) { r.initCount().setExpr("a"); }},
      {"topTags", "read",
       [](wire::Request::Builder r) {
         auto t = r.initTopTags();
         t.setExpr("a");
         t.setK(3);
       }},
      {"stats", "read", [](wire::Request::Builder r) { r.setStats(); }},
      {"audience", "export",
       [](wire::Request::Builder r) {
         auto a = r.initAudience();
         a.setExpr("a");
         a.setLimit(10);
       }},
      {"audienceBitmaps", "export",
       [](wire::Request::Builder r) { r.initAudienceBitmaps().setExpr("a"); }},
      {"exportShard", "export", [](wire::Request::Builder r) { r.initExportShard().setShard(0); }},
      {"applyEvents", "write",
       [](wire::Request::Builder r) {
         auto e = r.initApplyEvents().initEvents(1)[0];
         e.setUser(7);
         e.setTag("a");
         e.setTs(1000);
       }},
      {"loadSnapshot", "write",
       [bitmap, bytes](wire::Request::Builder r) {
         auto l = r.initLoadSnapshot();
         l.setTag("b");
         l.setTs(500);
         l.setShard(0);
         l.setBitmap(bytes(bitmap));
       }},
      {"commitSnapshot", "write",
       [](wire::Request::Builder r) {
         auto c = r.initCommitSnapshot();
         c.setTag("b");
         c.setTs(500);
         c.initShards(1).set(0, 0);
       }},
      {"mergeShard", "write",
       [](wire::Request::Builder r) { r.initMergeShard().setState(kj::heapArray<kj::byte>(16)); }},
      {"checkpoint", "admin", [](wire::Request::Builder r) { r.setCheckpoint(); }},
      {"setClusterMap", "admin",
       [](wire::Request::Builder r) {
         auto s = r.initSetClusterMap();
         s.initMap().setEpoch(0);
         s.setNodeId("n1");
       }},
      {"shardDigests", "admin", [](wire::Request::Builder r) { r.setShardDigests(); }},
      {"listShards", "admin", [](wire::Request::Builder r) { r.setListShards(); }},
  };
}

Fill FillOf(const std::string& name) {
  for (const KindCase& k : Kinds()) {
    if (name == k.name) return k.fill;
  }
  ADD_FAILURE() << "no request kind " << name;
  return [](wire::Request::Builder r) { r.setPing(); };
}

// What a token of `held` may send, by the documented rules: admin implies
// every role, export implies read.
bool Permits(const std::string& held, const std::string& needed) {
  if (needed.empty() || held == "admin" || held == needed) return true;
  return held == "export" && needed == "read";
}

class AuthNodeTest : public ::testing::Test {
 protected:
  NodeOptions Options() {
    NodeOptions o = SmallTestNodeOptions();
    WriteText(auth_file_, AuthFileText());
    o.auth_file = auth_file_;
    return o;
  }

  // A raw connection whose hello with `token` succeeded.
  std::unique_ptr<RawClient> Established(const std::string& token) {
    auto c = std::make_unique<RawClient>(node_->port());
    EXPECT_TRUE(c->connected());
    EXPECT_TRUE(c->Send(HelloWithToken(1, token)));
    auto reply = c->Read();
    EXPECT_TRUE(reply.has_value());
    if (reply) {
      EXPECT_EQ(reply->get().getStatus(), wire::Status::OK) << reply->get().getMessage().cStr();
    }
    return c;
  }

  // The hello with `token` is refused UNAUTHORIZED (message containing
  // `says`) and the node closes the connection.
  void ExpectHelloRefused(const std::string& token, const std::string& says) {
    RawClient c(node_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.Send(HelloWithToken(1, token)));
    auto reply = c.Read();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->get().getStatus(), wire::Status::UNAUTHORIZED);
    EXPECT_NE(std::string(reply->get().getMessage().cStr()).find(says), std::string::npos)
        << reply->get().getMessage().cStr();
    EXPECT_TRUE(c.WaitClosed(milliseconds(5000)));
  }

  static std::optional<Reply> Call(RawClient& c, uint64_t id, const Fill& fill) {
    if (!c.Send(RequestFrame(id, fill))) return std::nullopt;
    auto reply = c.Read();
    if (reply) {
      EXPECT_EQ(reply->get().getId(), id);
    }
    return reply;
  }

  testing::ScopedTempDir dir_{"tagcache-auth-node"};
  const std::string auth_file_ = dir_ / "auth";
  std::unique_ptr<RunningNode> node_;
};

class RoleTableTest : public AuthNodeTest,
                      public ::testing::WithParamInterface<std::pair<std::string, std::string>> {};

// Table-driven over every request kind: the role's token is refused
// exactly the kinds the documented table does not grant it, each refusal
// names the missing role, and the connection keeps serving afterwards.
TEST_P(RoleTableTest, EachKindAllowedOrRefusedByRole) {
  const auto& [role, token] = GetParam();
  node_ = MustStart(Options());
  ASSERT_NE(node_, nullptr);
  auto c = Established(token);
  uint64_t id = 10;
  for (const KindCase& k : Kinds()) {
    SCOPED_TRACE(std::string(k.name) + " with a " + role + " token");
    auto reply = Call(*c, ++id, k.fill);
    ASSERT_TRUE(reply.has_value()) << "no answer: the connection was closed";
    const auto status = reply->get().getStatus();
    const std::string message = reply->get().getMessage().cStr();
    if (Permits(role, k.role)) {
      EXPECT_NE(status, wire::Status::UNAUTHORIZED) << message;
    } else {
      EXPECT_EQ(status, wire::Status::UNAUTHORIZED);
      EXPECT_NE(message.find(std::string(k.name) + " requires the '" + k.role + "' role"),
                std::string::npos)
          << message;
      // The roles held, as the node counts them (export includes read).
      const size_t has = message.find("token has ");
      ASSERT_NE(has, std::string::npos) << message;
      EXPECT_NE(message.find(role, has), std::string::npos) << message;
    }
    // Still usable: a ping is answered on the same connection.
    auto ping = Call(*c, ++id, [](wire::Request::Builder r) { r.setPing(); });
    ASSERT_TRUE(ping.has_value());
    EXPECT_EQ(ping->get().getStatus(), wire::Status::OK);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Roles, RoleTableTest,
    ::testing::Values(std::pair<std::string, std::string>{"read", kReadToken},
                      std::pair<std::string, std::string>{"export", kExportToken},
                      std::pair<std::string, std::string>{"write", kWriteToken},
                      std::pair<std::string, std::string>{"admin", kAdminToken}),
    [](const auto& p) { return p.param.first; });

TEST_F(AuthNodeTest, HelloWithoutTokenIsRefusedAndClosed) {
  node_ = MustStart(Options());
  ASSERT_NE(node_, nullptr);
  ExpectHelloRefused("", "requires a token");
}

TEST_F(AuthNodeTest, HelloWithWrongTokenIsRefusedAndClosed) {
  node_ = MustStart(Options());
  ASSERT_NE(node_, nullptr);
  ExpectHelloRefused("tok-read-0124", "not accepted");
  ExpectHelloRefused(security::HashTokenHex(kReadToken), "not accepted");  // the hash is no token
  // The node still serves good tokens.
  auto c = Established(kReadToken);
  auto reply = Call(*c, 5, [](wire::Request::Builder r) { r.initGetTags().setUser(1); });
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->get().getStatus(), wire::Status::OK);
}

TEST_F(AuthNodeTest, RequestBeforeHelloIsStillRefused) {
  node_ = MustStart(Options());
  ASSERT_NE(node_, nullptr);
  RawClient c(node_->port());
  ASSERT_TRUE(c.Send(RequestFrame(3, [](wire::Request::Builder r) { r.setStats(); })));
  auto reply = c.Read();
  ASSERT_TRUE(reply.has_value());
  EXPECT_NE(reply->get().getStatus(), wire::Status::OK);
  EXPECT_TRUE(c.WaitClosed(milliseconds(5000)));
}

// A reload applies to open connections' next requests: a token no longer
// listed is refused and its connection closed; a new token works at once.
TEST_F(AuthNodeTest, ReloadRevokesAndGrants) {
  node_ = MustStart(Options());
  ASSERT_NE(node_, nullptr);
  auto old_conn = Established(kReadToken);
  auto write_conn = Established(kWriteToken);

  WriteText(auth_file_, "write:" + security::HashTokenHex(kWriteToken) + "\n" +
                            "read:" + security::HashTokenHex("tok-new") + "\n");
  Status s = node_->node().ReloadAuth();
  ASSERT_TRUE(s.ok()) << s.ToString();

  auto refused = Call(*old_conn, 7, [](wire::Request::Builder r) { r.initGetTags().setUser(1); });
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->get().getStatus(), wire::Status::UNAUTHORIZED);
  EXPECT_NE(std::string(refused->get().getMessage().cStr()).find("no longer accepted"),
            std::string::npos);
  EXPECT_TRUE(old_conn->WaitClosed(milliseconds(5000)));

  // The write token kept its role, on its open connection and on new ones.
  auto ok = Call(*write_conn, 8, FillOf("applyEvents"));
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->get().getStatus(), wire::Status::OK) << ok->get().getMessage().cStr();
  auto fresh = Established("tok-new");
  auto got = Call(*fresh, 9, [](wire::Request::Builder r) { r.initGetTags().setUser(7); });
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->get().getStatus(), wire::Status::OK);
  ExpectHelloRefused(kReadToken, "not accepted");
}

TEST_F(AuthNodeTest, BadFileOnReloadKeepsTheOldTable) {
  node_ = MustStart(Options());
  ASSERT_NE(node_, nullptr);
  WriteText(auth_file_, "read:" + security::HashTokenHex("x") + "\nsuperuser:abc\n");
  Status s = node_->node().ReloadAuth();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(auth_file_ + ":2:"), std::string::npos) << s.message();
  auto c = Established(kAdminToken);
  auto reply = Call(*c, 4, [](wire::Request::Builder r) { r.setListShards(); });
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->get().getStatus(), wire::Status::OK);
  ExpectHelloRefused("x", "not accepted");
}

TEST_F(AuthNodeTest, BadOrMissingAuthFileRefusesToStart) {
  NodeOptions o = Options();
  WriteText(auth_file_,
            "read:" + security::HashTokenHex("x") + "\nread:" + std::string(64, 'z') + "\n");
  auto r = RunningNode::Start(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(auth_file_ + ":2:"), std::string::npos)
      << r.status().message();

  o.auth_file = dir_ / "missing";
  r = RunningNode::Start(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIoError);
  EXPECT_NE(r.status().message().find(o.auth_file), std::string::npos);
}

TEST_F(AuthNodeTest, WithoutAuthFileANonLoopbackListenBecomesLoopback) {
  NodeOptions o = Options();
  o.auth_file.clear();
  o.listen_host = "0.0.0.0";
  node_ = MustStart(o);
  ASSERT_NE(node_, nullptr);
  EXPECT_EQ(node_->node().listen_address().rfind("127.0.0.1:", 0), 0u)
      << node_->node().listen_address();
  node_.reset();

  o.insecure_listen_any = true;
  node_ = MustStart(o);
  ASSERT_NE(node_, nullptr);
  EXPECT_EQ(node_->node().listen_address().rfind("0.0.0.0:", 0), 0u)
      << node_->node().listen_address();
  node_.reset();

  // With an auth file the address is the operator's.
  o = Options();
  o.listen_host = "0.0.0.0";
  node_ = MustStart(o);
  ASSERT_NE(node_, nullptr);
  EXPECT_EQ(node_->node().listen_address().rfind("0.0.0.0:", 0), 0u);
}

TEST_F(AuthNodeTest, WithoutAuthFileEveryRequestIsAllowedAndReloadIsRefused) {
  NodeOptions o = Options();
  o.auth_file.clear();
  node_ = MustStart(o);
  ASSERT_NE(node_, nullptr);
  auto c = Established("");
  auto reply = Call(*c, 2, [](wire::Request::Builder r) { r.setListShards(); });
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->get().getStatus(), wire::Status::OK);
  EXPECT_TRUE(node_->node().ReloadAuth().IsBadRequest());
}

TEST_F(AuthNodeTest, ClientLibraryCarriesItsToken) {
  node_ = MustStart(Options());
  ASSERT_NE(node_, nullptr);

  client::ClientOptions none = node_->Options();
  auto refused = client::Client::Connect(none);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.status().IsUnauthorized()) << refused.status().ToString();

  client::ClientOptions writer = node_->Options();
  writer.token = kWriteToken;
  auto w = node_->Connect(writer);
  ASSERT_NE(w, nullptr);
  auto applied = w->ApplyEvents({{42, "apple_fan", client::TagOp::kSet, 1000}});
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  auto read_by_writer = w->GetTags(42);
  ASSERT_FALSE(read_by_writer.ok());
  EXPECT_TRUE(read_by_writer.status().IsUnauthorized());
  EXPECT_NE(read_by_writer.status().message().find("'read' role"), std::string::npos)
      << read_by_writer.status().message();

  client::ClientOptions exporter = node_->Options();
  exporter.token = kExportToken;
  auto e = node_->Connect(exporter);
  ASSERT_NE(e, nullptr);
  auto page = e->Audience("apple_fan", 0, 10);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->users.size(), 1u);
  EXPECT_EQ(page->users[0], 42u);
  auto count = e->Count("apple_fan");  // export implies read
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 1u);
  auto write_by_exporter = e->ApplyEvents({{43, "apple_fan", client::TagOp::kSet, 1000}});
  ASSERT_FALSE(write_by_exporter.ok());
  EXPECT_TRUE(write_by_exporter.status().IsUnauthorized());
}

}  // namespace
}  // namespace tagcache::net
