// A fresh directory under the test temp dir for one test, removed with its
// contents when the test ends. Shared by the suites that touch files.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace tagcache::testing {

class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& prefix = "tagcache") {
    std::string templ = ::testing::TempDir() + prefix + "-XXXXXX";
    char* made = ::mkdtemp(templ.data());
    EXPECT_NE(made, nullptr) << templ;
    path_ = templ;
  }
  ~ScopedTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);  // best effort: a leftover temp dir fails nothing
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace tagcache::testing
