// Sets (or unsets) an environment variable for one scope and restores the
// previous value after; for tests of programs and helpers that read the
// environment (child processes inherit it).
#pragma once

#include <stdlib.h>

#include <optional>
#include <string>

namespace tagcache::testing {

class ScopedEnv {
 public:
  // `value` null: unset.
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = ::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace tagcache::testing
