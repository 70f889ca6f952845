// The credential flags every tool takes (--token, --token-file, --tls,
// --tls-ca, --tls-cert, --tls-key), declared once for CLI11. Tools only: the
// installed client library does not depend on CLI11. Apply the parsed values
// with client::ApplyCredentials (tagcache/client/credentials.h).
#pragma once

#include <CLI/CLI.hpp>

#include "tagcache/client/credentials.h"

namespace tagcache::client {

// Adds the flags to `app`, bound to `flags` (which must outlive parsing).
inline void AddCredentialFlags(CLI::App& app, CredentialFlags& flags) {
  app.add_option("--token", flags.token,
                 "Token for nodes with --auth-file (visible to `ps`: prefer --token-file or "
                 "TAGCACHE_TOKEN)");
  app.add_option("--token-file", flags.token_file, "Read the token from this file");
  app.add_flag("--tls", flags.tls, "Speak TLS to the nodes (needs --tls-ca)");
  app.add_option("--tls-ca", flags.tls_ca, "PEM CA file that the nodes' certificates chain to");
  app.add_option("--tls-cert", flags.tls_cert,
                 "PEM client certificate, for nodes started with --tls-client-ca");
  app.add_option("--tls-key", flags.tls_key, "PEM private key of --tls-cert");
}

}  // namespace tagcache::client
