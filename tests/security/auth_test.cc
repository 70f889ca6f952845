// The auth file format, token hashing and role semantics
// (tagcache/security/auth.h), without a node.
#include "tagcache/security/auth.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "common/temp_dir.h"

namespace tagcache::security {
namespace {

// SHA-256 test vectors (FIPS 180-2).
TEST(HashTokenTest, MatchesPublishedVectors) {
  EXPECT_EQ(HashTokenHex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HashTokenHex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(RoleTest, NamesRoundTrip) {
  for (Role r : {Role::kRead, Role::kExport, Role::kWrite, Role::kAdmin}) {
    Result<Role> parsed = ParseRole(RoleName(r));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, r);
  }
  Result<Role> bad = ParseRole("root");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsBadRequest());
  EXPECT_NE(bad.status().message().find("root"), std::string::npos);
}

TEST(RoleTest, AdminImpliesEveryRoleAndExportImpliesRead) {
  EXPECT_EQ(RoleSet(Role::kAdmin).Effective(), RoleSet::All());
  RoleSet exp = RoleSet(Role::kExport).Effective();
  EXPECT_TRUE(exp.Has(Role::kRead));
  EXPECT_FALSE(exp.Has(Role::kWrite));
  EXPECT_FALSE(exp.Has(Role::kAdmin));
  RoleSet write = RoleSet(Role::kWrite).Effective();
  EXPECT_FALSE(write.Has(Role::kRead));
  EXPECT_FALSE(RoleSet(Role::kRead).Effective().Has(Role::kExport));
  EXPECT_EQ(DescribeRoles(RoleSet()), "none");
  EXPECT_EQ(DescribeRoles(RoleSet(Role::kRead).Add(Role::kWrite)), "read,write");
}

TEST(AuthTableTest, ParsesEntriesCommentsAndBlankLines) {
  const std::string text = "# tokens of the persona cluster\n\n  read:" + HashTokenHex("r") +
                           "  \r\nwrite:" + HashTokenHex("w") + "\n" +
                           "admin:" + HashTokenHex("a") + "\n# end";
  Result<AuthTable> table = AuthTable::Parse(text, "auth");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->entries(), 3u);
  EXPECT_EQ(table->Lookup("r"), RoleSet(Role::kRead));
  EXPECT_EQ(table->Lookup("w"), RoleSet(Role::kWrite));
  EXPECT_EQ(table->Lookup("a"), RoleSet(Role::kAdmin));
  EXPECT_TRUE(table->Lookup("x").empty());
  EXPECT_TRUE(table->Lookup("").empty());
  EXPECT_TRUE(table->Lookup("r ").empty());  // tokens are compared exactly
}

TEST(AuthTableTest, TokenOnSeveralLinesHoldsEveryRoleNamed) {
  std::string hex = HashTokenHex("loader");
  for (char& c : hex) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::string text = "read:" + HashTokenHex("loader") + "\nwrite:" + hex + "\n";
  Result<AuthTable> table = AuthTable::Parse(text, "auth");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->entries(), 1u);
  EXPECT_EQ(table->Lookup("loader"), RoleSet(Role::kRead).Add(Role::kWrite));
}

// Every malformed line is refused naming the source and the line number.
TEST(AuthTableTest, BadLinesNameFileAndLine) {
  const std::string good = "read:" + HashTokenHex("t") + "\n";
  struct Case {
    std::string line;
    std::string says;
  } cases[] = {
      {"reader:" + HashTokenHex("t"), "unknown role 'reader'"},
      {HashTokenHex("t"), "expected ROLE:SHA256HEX"},
      {"read:" + HashTokenHex("t").substr(0, 63), "64 hex digits"},
      {"read:" + HashTokenHex("t") + "0", "64 hex digits"},
      {"read:" + std::string(63, 'a') + "g", "not a hex digit"},
      {"read:plaintext-token", "64 hex digits"},
      {":" + HashTokenHex("t"), "unknown role ''"},
  };
  for (const Case& c : cases) {
    Result<AuthTable> table = AuthTable::Parse("# x\n" + good + c.line + "\n", "/etc/tc/auth");
    ASSERT_FALSE(table.ok()) << c.line;
    EXPECT_TRUE(table.status().IsBadRequest());
    EXPECT_NE(table.status().message().find("/etc/tc/auth:3: "), std::string::npos)
        << table.status().message();
    EXPECT_NE(table.status().message().find(c.says), std::string::npos) << table.status().message();
  }
}

TEST(AuthTableTest, NoEntryIsRefused) {
  for (const std::string text : {"", "\n\n", "# only comments\n  # more\n"}) {
    Result<AuthTable> table = AuthTable::Parse(text, "auth");
    ASSERT_FALSE(table.ok());
    EXPECT_NE(table.status().message().find("no ROLE:SHA256HEX entry"), std::string::npos);
  }
}

TEST(AuthTableTest, LoadReadsAFileAndNamesAMissingOne) {
  testing::ScopedTempDir dir("tagcache-auth");
  const std::string path = dir / "auth";
  {
    std::ofstream out(path);
    out << "export:" << HashTokenHex("e") << "\n";
  }
  Result<AuthTable> table = AuthTable::Load(path);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->Lookup("e"), RoleSet(Role::kExport));

  Result<AuthTable> missing = AuthTable::Load(dir / "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kIoError);
  EXPECT_NE(missing.status().message().find(dir / "nope"), std::string::npos);
}

}  // namespace
}  // namespace tagcache::security
