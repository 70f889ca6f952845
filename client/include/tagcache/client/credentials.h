// Where tools (tagctl, tagcache-kafka, tagbench) get their credentials: a
// token from a flag, a file or the environment, and the TLS files. One
// helper, so every tool reads them the same way (docs/SECURITY.md).
//
// Token precedence: --token, then --token-file, then the environment
// variable TAGCACHE_TOKEN; giving both --token and --token-file is an error.
#pragma once

#include <cstddef>
#include <string>

#include "tagcache/client/client.h"
#include "tagcache/common/status.h"

namespace tagcache::client {

// Longest token a client sends (the hello must fit the 16 KiB pre-hello frame).
inline constexpr size_t kMaxTokenBytes = 4096;
// The environment variable a token is read from when no flag gives one.
inline constexpr const char* kTokenEnvVar = "TAGCACHE_TOKEN";

// The command-line view of ClientOptions::token and ClientOptions::tls.
struct CredentialFlags {
  std::string token;       // --token (visible in `ps`: prefer a file or the environment)
  std::string token_file;  // --token-file
  bool tls = false;        // --tls
  std::string tls_ca;      // --tls-ca
  std::string tls_cert;    // --tls-cert (client certificate)
  std::string tls_key;     // --tls-key
};

// A token file's content without its trailing newline (and surrounding
// spaces). IO_ERROR naming the file when it cannot be read; BAD_REQUEST
// naming it when it is empty, longer than kMaxTokenBytes, or holds
// whitespace or control characters inside the token.
Result<std::string> ReadTokenFile(const std::string& path);

// The token by the precedence above; `env_value` is the environment
// variable's value (null: unset). Empty when none is given anywhere.
// BAD_REQUEST when both a token and a token file are given, or when the
// token chosen is malformed as for ReadTokenFile.
Result<std::string> ResolveToken(const std::string& token, const std::string& token_file,
                                 const char* env_value);

// Fills options.token (reading TAGCACHE_TOKEN from the environment) and
// options.tls from `flags`. BAD_REQUEST for a TLS file without --tls, or
// --tls without --tls-ca; the errors of ResolveToken.
Status ApplyCredentials(const CredentialFlags& flags, ClientOptions& options);

}  // namespace tagcache::client
