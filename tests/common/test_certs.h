// Certificates for TLS tests, made at test time with the `openssl` CLI (no
// key material is kept in the repository): a CA, a server certificate for
// 127.0.0.1 and localhost signed by it, a client certificate signed by it, a
// second CA that signed nothing the server uses, and a server certificate
// for another host name. EC P-256 keys: generating them takes milliseconds.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace tagcache::testing {

struct TestCerts {
  std::string ca;           // CA certificate (PEM)
  std::string server_cert;  // for IP 127.0.0.1 and DNS localhost, signed by ca
  std::string server_key;
  std::string client_cert;  // clientAuth, signed by ca
  std::string client_key;
  std::string other_ca;         // a CA nothing here is signed by
  std::string wrong_host_cert;  // signed by ca, for elsewhere.example only
  std::string wrong_host_key;
};

// Writes the certificates under `dir` (which must exist). Records a test
// failure and returns false when openssl fails.
inline bool MakeTestCerts(const std::string& dir, TestCerts& out) {
  const std::string script = dir + "/make_certs.sh";
  {
    std::ofstream s(script);
    s << R"SH(set -e
cd "$1"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {  # ca NAME CN
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() {  # leaf NAME CN EXTENSIONS
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
    -days 2 -out "$1.pem" -extfile "$1.ext" 2>/dev/null
}
ca ca tagcache-test-ca
ca other-ca tagcache-other-ca
leaf server 127.0.0.1 "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth"
leaf client tagcache-test-client "extendedKeyUsage=clientAuth"
leaf wrong-host elsewhere.example "subjectAltName=DNS:elsewhere.example
extendedKeyUsage=serverAuth"
)SH";
  }
  const std::string cmd = "sh " + script + " " + dir + " > " + dir + "/openssl.log 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream log(dir + "/openssl.log");
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    ADD_FAILURE() << "generating test certificates with openssl failed:\n" << text;
    return false;
  }
  out.ca = dir + "/ca.pem";
  out.server_cert = dir + "/server.pem";
  out.server_key = dir + "/server.key";
  out.client_cert = dir + "/client.pem";
  out.client_key = dir + "/client.key";
  out.other_ca = dir + "/other-ca.pem";
  out.wrong_host_cert = dir + "/wrong-host.pem";
  out.wrong_host_key = dir + "/wrong-host.key";
  return true;
}

}  // namespace tagcache::testing
