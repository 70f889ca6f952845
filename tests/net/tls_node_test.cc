// TLS between the client library and an in-process node, with certificates
// made by the openssl CLI at test time (tests/common/test_certs.h): a client
// that trusts the CA works; one that does not, or that reaches the node by
// a name its certificate does not carry, is refused; plaintext and TLS
// meeting each other fail cleanly within the connect timeout and the node
// keeps serving; client certificates are enforced when required.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>

#include "common/temp_dir.h"
#include "common/test_certs.h"
#include "net/raw_client.h"
#include "net/running_node.h"
#include "tagcache/net/node.h"
#include "tagcache/security/auth.h"

namespace tagcache::net {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

class TlsNodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::ScopedTempDir("tagcache-tls");
    certs_ok_ = testing::MakeTestCerts(dir_->path(), certs_);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(certs_ok_) << "no test certificates"; }

  static NodeOptions Options(bool tls) {
    NodeOptions o = SmallTestNodeOptions();
    o.hello_timeout = milliseconds(3000);
    if (tls) {
      o.tls_cert_file = certs_.server_cert;
      o.tls_key_file = certs_.server_key;
    }
    return o;
  }

  static client::ClientOptions TlsClient(const RunningNode& node, const std::string& ca) {
    client::ClientOptions o = node.Options("tls-test");
    o.connect_timeout = milliseconds(2000);
    o.tls.enabled = true;
    o.tls.ca_file = ca;
    return o;
  }

  // Connect() fails (never hangs past the connect timeout plus slack) with
  // a message containing `says`.
  static void ExpectRefused(const client::ClientOptions& options, const std::string& says) {
    const auto start = Clock::now();
    auto c = client::Client::Connect(options);
    const auto took = Clock::now() - start;
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find(says), std::string::npos) << c.status().ToString();
    EXPECT_LT(took, options.connect_timeout + milliseconds(3000));
  }

  // The node answers a trusted TLS client (it survived whatever came before).
  static void ExpectServes(const RunningNode& node) {
    auto c = node.Connect(TlsClient(node, certs_.ca));
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(c->Ping().ok());
  }

  static testing::ScopedTempDir* dir_;
  static testing::TestCerts certs_;
  static bool certs_ok_;
};

testing::ScopedTempDir* TlsNodeTest::dir_ = nullptr;
testing::TestCerts TlsNodeTest::certs_;
bool TlsNodeTest::certs_ok_ = false;

TEST_F(TlsNodeTest, ClientTrustingTheCaRunsRequests) {
  auto node = MustStart(Options(true));
  ASSERT_NE(node, nullptr);
  auto c = node->Connect(TlsClient(*node, certs_.ca));
  ASSERT_NE(c, nullptr);
  auto applied = c->ApplyEvents(
      {{42, "apple_fan", client::TagOp::kSet, 1000}, {43, "apple_fan", client::TagOp::kSet, 1000}});
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(applied->applied, 2u);
  auto tags = c->GetTags(42);
  ASSERT_TRUE(tags.ok());
  ASSERT_EQ(tags->size(), 1u);
  EXPECT_EQ((*tags)[0].tag, "apple_fan");
  // A response larger than one TLS record (16 KiB) arrives whole.
  std::vector<client::Event> many;
  for (uint64_t u = 0; u < 20000; ++u) many.push_back({u, "big", client::TagOp::kSet, 1000});
  ASSERT_TRUE(c->ApplyEvents(many).ok());
  auto page = c->Audience("big", 0, 20000);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  EXPECT_EQ(page->users.size(), 20000u);
}

TEST_F(TlsNodeTest, ClientNotTrustingTheCaIsRefused) {
  auto node = MustStart(Options(true));
  ASSERT_NE(node, nullptr);
  ExpectRefused(TlsClient(*node, certs_.other_ca), "TLS handshake");
  ExpectServes(*node);
}

TEST_F(TlsNodeTest, CertificateForAnotherHostIsRefused) {
  NodeOptions o = Options(true);
  o.tls_cert_file = certs_.wrong_host_cert;
  o.tls_key_file = certs_.wrong_host_key;
  auto node = MustStart(o);
  ASSERT_NE(node, nullptr);
  ExpectRefused(TlsClient(*node, certs_.ca), "TLS handshake");
}

TEST_F(TlsNodeTest, PlaintextClientToTlsPortFailsCleanly) {
  auto node = MustStart(Options(true));
  ASSERT_NE(node, nullptr);
  client::ClientOptions plain = node->Options("plain");
  ExpectRefused(plain, "TLS port");
  // Raw garbage and a bare plaintext hello do not hurt the node either.
  {
    RawClient raw(node->port());
    ASSERT_TRUE(raw.connected());
    ASSERT_TRUE(raw.Send(RequestFrame(1, [](wire::Request::Builder r) { r.setPing(); })));
    EXPECT_TRUE(raw.WaitClosed(milliseconds(5000)));
  }
  ExpectServes(*node);
}

TEST_F(TlsNodeTest, TlsClientToPlaintextPortFailsCleanly) {
  auto node = MustStart(Options(false));
  ASSERT_NE(node, nullptr);
  ExpectRefused(TlsClient(*node, certs_.ca), "TLS handshake");
  auto plain = node->Connect("plain");
  ASSERT_NE(plain, nullptr);
  EXPECT_TRUE(plain->Ping().ok());
}

TEST_F(TlsNodeTest, RequiredClientCertificateIsEnforced) {
  NodeOptions o = Options(true);
  o.tls_client_ca_file = certs_.ca;
  auto node = MustStart(o);
  ASSERT_NE(node, nullptr);
  // Under TLS 1.3 the client learns of the refusal after its handshake:
  // either way it never gets a connection.
  client::ClientOptions no_cert = TlsClient(*node, certs_.ca);
  auto refused = client::Client::Connect(no_cert);
  ASSERT_FALSE(refused.ok());

  client::ClientOptions with_cert = TlsClient(*node, certs_.ca);
  with_cert.tls.cert_file = certs_.client_cert;
  with_cert.tls.key_file = certs_.client_key;
  auto c = node->Connect(with_cert);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->ApplyEvents({{1, "t", client::TagOp::kSet, 1000}}).ok());

  // A certificate not made for clients (serverAuth only) is refused too.
  client::ClientOptions foreign = with_cert;
  foreign.tls.cert_file = certs_.wrong_host_cert;  // signed by ca, but serverAuth only
  foreign.tls.key_file = certs_.wrong_host_key;
  EXPECT_FALSE(client::Client::Connect(foreign).ok());
}

TEST_F(TlsNodeTest, TlsAndTokensTogether) {
  testing::ScopedTempDir dir("tagcache-tls-auth");
  const std::string auth = dir / "auth";
  {
    std::ofstream out(auth);
    out << "read:" << security::HashTokenHex("tls-reader") << "\n";
  }
  NodeOptions o = Options(true);
  o.auth_file = auth;
  auto node = MustStart(o);
  ASSERT_NE(node, nullptr);
  client::ClientOptions opts = TlsClient(*node, certs_.ca);
  auto refused = client::Client::Connect(opts);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.status().IsUnauthorized()) << refused.status().ToString();
  opts.token = "tls-reader";
  auto c = node->Connect(opts);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->GetTags(1).ok());
  EXPECT_TRUE(c->ApplyEvents({{1, "t", client::TagOp::kSet, 1000}}).status().IsUnauthorized());
}

TEST_F(TlsNodeTest, UnusableCertificateFilesRefuseToStart) {
  NodeOptions o = Options(true);
  o.tls_key_file = certs_.client_key;  // the key of another certificate
  auto r = RunningNode::Start(o);
  ASSERT_FALSE(r.ok());
  // OpenSSL itself may notice first ("key values mismatch").
  EXPECT_NE(r.status().message().find(certs_.client_key), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("match"), std::string::npos) << r.status().message();

  o = Options(true);
  o.tls_cert_file = dir_->path() + "/missing.pem";
  r = RunningNode::Start(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("missing.pem"), std::string::npos);

  o = Options(true);
  o.tls_key_file.clear();
  r = RunningNode::Start(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--tls-key"), std::string::npos);
}

}  // namespace
}  // namespace tagcache::net
