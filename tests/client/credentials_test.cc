// How tools resolve their token and TLS settings (tagcache/client/credentials.h).
#include "tagcache/client/credentials.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "common/scoped_env.h"
#include "common/temp_dir.h"

namespace tagcache::client {
namespace {

std::string WriteFile(const testing::ScopedTempDir& dir, const std::string& name,
                      const std::string& content) {
  const std::string path = dir / name;
  std::ofstream out(path, std::ios::binary);
  out << content;
  return path;
}

using testing::ScopedEnv;

TEST(ReadTokenFileTest, DropsTheTrailingNewlineAndSurroundingSpace) {
  testing::ScopedTempDir dir("tagcache-cred");
  Result<std::string> t = ReadTokenFile(WriteFile(dir, "t", "  s3cret-token_1\r\n\n"));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(*t, "s3cret-token_1");
}

TEST(ReadTokenFileTest, RefusesEmptyHugeAndSpacedTokensNamingTheFile) {
  testing::ScopedTempDir dir("tagcache-cred");
  struct Case {
    std::string content;
    std::string says;
  } cases[] = {
      {"", "is empty"},
      {"\n \n", "is empty"},
      {"two words", "whitespace or a control character"},
      {"tab\there", "whitespace or a control character"},
      {std::string("nul\0x", 5), "whitespace or a control character"},
      {std::string(kMaxTokenBytes + 1, 'a'), "at most"},
  };
  for (const Case& c : cases) {
    const std::string path = WriteFile(dir, "t", c.content);
    Result<std::string> t = ReadTokenFile(path);
    ASSERT_FALSE(t.ok()) << c.says;
    EXPECT_TRUE(t.status().IsBadRequest());
    EXPECT_NE(t.status().message().find(path), std::string::npos) << t.status().message();
    EXPECT_NE(t.status().message().find(c.says), std::string::npos) << t.status().message();
  }
  Result<std::string> missing = ReadTokenFile(dir / "missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kIoError);
}

TEST(ResolveTokenTest, FlagThenFileThenEnvironment) {
  testing::ScopedTempDir dir("tagcache-cred");
  const std::string file = WriteFile(dir, "t", "from-file\n");
  EXPECT_EQ(*ResolveToken("from-flag", "", "from-env"), "from-flag");
  EXPECT_EQ(*ResolveToken("", file, "from-env"), "from-file");
  EXPECT_EQ(*ResolveToken("", "", "from-env"), "from-env");
  EXPECT_EQ(*ResolveToken("", "", nullptr), "");
  EXPECT_EQ(*ResolveToken("", "", ""), "");

  Result<std::string> both = ResolveToken("a", file, nullptr);
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.status().message().find("not both"), std::string::npos);
  EXPECT_FALSE(ResolveToken("has space", "", nullptr).ok());
  EXPECT_FALSE(ResolveToken("", "", "bad\nenv").ok());
}

TEST(ApplyCredentialsTest, ReadsTheEnvironmentWhenNoFlagIsGiven) {
  ScopedEnv env(kTokenEnvVar, "env-token");
  ClientOptions options;
  ASSERT_TRUE(ApplyCredentials(CredentialFlags{}, options).ok());
  EXPECT_EQ(options.token, "env-token");
  CredentialFlags flags;
  flags.token = "flag-token";
  ASSERT_TRUE(ApplyCredentials(flags, options).ok());
  EXPECT_EQ(options.token, "flag-token");
  EXPECT_FALSE(options.tls.enabled);
}

TEST(ApplyCredentialsTest, TlsFlagsMustBeConsistent) {
  ScopedEnv env(kTokenEnvVar, nullptr);
  ClientOptions options;
  CredentialFlags flags;
  flags.tls_ca = "/ca.pem";  // without --tls
  Status s = ApplyCredentials(flags, options);
  EXPECT_TRUE(s.IsBadRequest());
  EXPECT_NE(s.message().find("need --tls"), std::string::npos);

  flags = {};
  flags.tls = true;  // without a CA
  s = ApplyCredentials(flags, options);
  EXPECT_NE(s.message().find("--tls-ca"), std::string::npos);

  flags.tls_ca = "/ca.pem";
  flags.tls_cert = "/client.pem";  // without its key
  s = ApplyCredentials(flags, options);
  EXPECT_NE(s.message().find("go together"), std::string::npos);

  flags.tls_key = "/client.key";
  ASSERT_TRUE(ApplyCredentials(flags, options).ok());
  EXPECT_TRUE(options.tls.enabled);
  EXPECT_EQ(options.tls.ca_file, "/ca.pem");
  EXPECT_EQ(options.tls.cert_file, "/client.pem");
  EXPECT_EQ(options.tls.key_file, "/client.key");
  EXPECT_EQ(options.token, "");
}

TEST(ClientTlsTest, ConnectRefusesUnusableTlsSettings) {
  ClientOptions options;
  options.seeds = {"127.0.0.1:1"};
  options.tls.enabled = true;  // no CA
  auto c = Client::Connect(options);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().IsBadRequest());
  EXPECT_NE(c.status().message().find("CA file"), std::string::npos);

  options.tls.ca_file = "/nonexistent/ca.pem";
  c = Client::Connect(options);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("/nonexistent/ca.pem"), std::string::npos);

  options.tls = {};
  options.tls.ca_file = "/ca.pem";  // files without enabled: never silently plaintext
  c = Client::Connect(options);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("not enabled"), std::string::npos);

  options.tls = {};
  options.token = std::string(kMaxTokenBytes + 1, 't');
  c = Client::Connect(options);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("token"), std::string::npos);
}

}  // namespace
}  // namespace tagcache::client
