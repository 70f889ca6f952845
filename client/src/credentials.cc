#include "tagcache/client/credentials.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace tagcache::client {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// A token is opaque but printable: anything else is almost surely a wrong
// file (a key, a binary) or a copy-paste accident.
Status CheckToken(const std::string& token, const std::string& source) {
  if (token.empty()) return Status::BadRequest(source + " is empty");
  if (token.size() > kMaxTokenBytes) {
    return Status::BadRequest(source + " holds " + std::to_string(token.size()) +
                              " bytes; a token has at most " + std::to_string(kMaxTokenBytes));
  }
  for (unsigned char c : token) {
    if (c <= 0x20 || c == 0x7f) {
      return Status::BadRequest(source +
                                " holds whitespace or a control character inside the token");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError("cannot read token file " + path);
  std::string text;
  char buf[1024];
  // Read a little past the limit only: a huge file is not a token.
  while (text.size() <= kMaxTokenBytes + 2 && in.read(buf, sizeof(buf)), in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (!in) break;
  }
  if (in.bad()) return Status::IoError("cannot read token file " + path);
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end && IsSpace(text[begin])) ++begin;
  while (end > begin && IsSpace(text[end - 1])) --end;
  std::string token = text.substr(begin, end - begin);
  if (Status s = CheckToken(token, "token file " + path); !s.ok()) return s;
  return token;
}

Result<std::string> ResolveToken(const std::string& token, const std::string& token_file,
                                 const char* env_value) {
  if (!token.empty() && !token_file.empty()) {
    return Status::BadRequest("give either --token or --token-file, not both");
  }
  if (!token.empty()) {
    if (Status s = CheckToken(token, "--token"); !s.ok()) return s;
    return token;
  }
  if (!token_file.empty()) return ReadTokenFile(token_file);
  if (env_value != nullptr && env_value[0] != '\0') {
    std::string from_env(env_value);
    if (Status s = CheckToken(from_env, std::string(kTokenEnvVar)); !s.ok()) return s;
    return from_env;
  }
  return std::string();
}

Status ApplyCredentials(const CredentialFlags& flags, ClientOptions& options) {
  Result<std::string> token =
      ResolveToken(flags.token, flags.token_file, std::getenv(kTokenEnvVar));
  if (!token.ok()) return token.status();
  options.token = std::move(token).value();
  if (!flags.tls) {
    if (!flags.tls_ca.empty() || !flags.tls_cert.empty() || !flags.tls_key.empty()) {
      return Status::BadRequest("--tls-ca, --tls-cert and --tls-key need --tls");
    }
    options.tls = {};
    return Status::Ok();
  }
  if (flags.tls_ca.empty()) {
    return Status::BadRequest("--tls needs --tls-ca: the CA file that vouches for the nodes");
  }
  if (flags.tls_cert.empty() != flags.tls_key.empty()) {
    return Status::BadRequest("--tls-cert and --tls-key go together");
  }
  options.tls.enabled = true;
  options.tls.ca_file = flags.tls_ca;
  options.tls.cert_file = flags.tls_cert;
  options.tls.key_file = flags.tls_key;
  return Status::Ok();
}

}  // namespace tagcache::client
