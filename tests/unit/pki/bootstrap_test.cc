#include "node/pki/bootstrap.h"

#include <stdlib.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/pki/pkcs12.h"
#include "node/pki/x509.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::pki {
namespace {

using ::adcsc::testing::FileMode;
using ScratchDir = ::adcsc::testing::TempDir;
using ::testing::HasSubstr;

PkiInitOptions Options(const std::filesystem::path& out) {
  PkiInitOptions o;
  o.fqdn = "adcsc.example.com";
  o.jamf_pro_dn = "jamf.example.com";
  o.out_dir = out;
  return o;
}

int RunQuiet(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()); }

TEST(BootstrapTest, WritesTheIdentitiesWithTheRightModes) {
  ScratchDir scratch;
  const auto out = scratch.path() / "pki";
  PkiInitOptions options = Options(out);
  options.password_file = scratch.path() / "pfx-password";
  absl::StatusOr<PkiInitResult> result = InitConnectorPki(options);
  ASSERT_TRUE(result.ok()) << result.status();

  EXPECT_EQ(FileMode(out), 0700u);
  EXPECT_EQ(FileMode(out / kServerKeyFile), 0600u);
  EXPECT_EQ(FileMode(out / kClientPfxFile), 0600u);
  EXPECT_EQ(FileMode(options.password_file), 0600u);
  EXPECT_EQ(FileMode(out / kServerCertDerFile), 0644u);
  EXPECT_EQ(FileMode(out / kServerCertPemFile), 0644u);
  EXPECT_EQ(FileMode(out / kClientCertPemFile), 0644u);
  EXPECT_EQ(FileMode(out / kClientPinFile), 0644u);
  EXPECT_EQ(result->files.size(), 7u);

  EXPECT_EQ(result->client_password.size(), 20u);
  EXPECT_EQ(*ReadFileToString(options.password_file), result->client_password + "\n");

  // The server identity: DER and PEM agree; self-signed CA for the FQDN; key matches.
  auto der = ReadFileToString(out / kServerCertDerFile);
  ASSERT_TRUE(der.ok());
  auto server = CertFromDer(AsBytes(*der));
  ASSERT_TRUE(server.ok()) << server.status();
  auto server_pem = CertFromPem(*ReadFileToString(out / kServerCertPemFile));
  ASSERT_TRUE(server_pem.ok());
  EXPECT_EQ(X509_cmp(server->get(), server_pem->get()), 0);
  EXPECT_EQ(NameToString(X509_get_subject_name(server->get())), "CN=adcsc.example.com");
  EXPECT_THAT(SubjectAltNames(server->get()), ::testing::ElementsAre("DNS:adcsc.example.com"));
  EXPECT_EQ(X509_check_ca(server->get()), 1);
  auto server_key = ReadPrivateKeyFile(out / kServerKeyFile);
  ASSERT_TRUE(server_key.ok()) << server_key.status();
  EXPECT_EQ(X509_check_private_key(server->get(), server_key->get()), 1);
  EXPECT_EQ(result->server_pin, CertSha256Hex(server->get()));

  // The client identity: PKCS#12 opens with the password; its cert is client-cert.pem, chains
  // to the server identity, has CN = Jamf Pro's name and EKU clientAuth; the pin matches.
  auto pfx = ReadFileToString(out / kClientPfxFile);
  ASSERT_TRUE(pfx.ok());
  auto p12 = LoadPkcs12(AsBytes(*pfx), result->client_password);
  ASSERT_TRUE(p12.ok()) << p12.status();
  auto client_pem = CertFromPem(*ReadFileToString(out / kClientCertPemFile));
  ASSERT_TRUE(client_pem.ok());
  EXPECT_EQ(X509_cmp(p12->cert.get(), client_pem->get()), 0);
  EXPECT_EQ(NameToString(X509_get_subject_name(p12->cert.get())), "CN=jamf.example.com");
  EXPECT_THAT(ExtendedKeyUsages(p12->cert.get()), ::testing::ElementsAre(std::string(kEkuClientAuth)));
  absl::Status chain = VerifyChain(p12->cert.get(), {server->get()});
  EXPECT_TRUE(chain.ok()) << chain;
  ASSERT_EQ(p12->chain.size(), 1u);
  EXPECT_EQ(X509_cmp(p12->chain[0].get(), server->get()), 0);
  EXPECT_EQ(*ReadFileToString(out / kClientPinFile), result->client_pin + "\n");
  EXPECT_EQ(result->client_pin, CertSha256Hex(client_pem->get()));
  EXPECT_EQ(result->client_pin.size(), 64u);
  // Ten years by default (the client certificate may be capped at the server's notAfter).
  EXPECT_GE(NotAfterUnix(p12->cert.get()) - NotBeforeUnix(p12->cert.get()), 3650LL * 86400);
}

TEST(BootstrapTest, RefusesToOverwriteWithoutForce) {
  ScratchDir scratch;
  const auto out = scratch.path() / "pki";
  absl::StatusOr<PkiInitResult> first = InitConnectorPki(Options(out));
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string pfx_before = *ReadFileToString(out / kClientPfxFile);

  absl::StatusOr<PkiInitResult> again = InitConnectorPki(Options(out));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr((out / kServerKeyFile).string()));
  EXPECT_THAT(again.status().message(), HasSubstr((out / kClientPfxFile).string()));
  EXPECT_THAT(again.status().message(), HasSubstr("--force"));
  EXPECT_EQ(*ReadFileToString(out / kClientPfxFile), pfx_before);

  // Only one file present is enough to refuse, and it is named.
  ScratchDir other;
  ASSERT_TRUE(WriteFileAtomic(other.path() / kClientPinFile, "x\n", 0644).ok());
  absl::StatusOr<PkiInitResult> partial = InitConnectorPki(Options(other.path()));
  ASSERT_FALSE(partial.ok());
  EXPECT_THAT(partial.status().message(), HasSubstr(kClientPinFile));
  EXPECT_FALSE(std::filesystem::exists(other.path() / kServerKeyFile));

  PkiInitOptions forced = Options(out);
  forced.force = true;
  absl::StatusOr<PkiInitResult> replaced = InitConnectorPki(forced);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_NE(replaced->client_pin, first->client_pin);
  EXPECT_NE(*ReadFileToString(out / kClientPfxFile), pfx_before);
  EXPECT_EQ(FileMode(out / kClientPfxFile), 0600u);
}

TEST(BootstrapTest, ValidatesOptionsAllAtOnce) {
  PkiInitOptions o;
  o.client_years = 0;
  absl::StatusOr<PkiInitResult> r = InitConnectorPki(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("--fqdn"));
  EXPECT_THAT(r.status().message(), HasSubstr("--jamf-pro-dn"));
  EXPECT_THAT(r.status().message(), HasSubstr("--out"));
  EXPECT_THAT(r.status().message(), HasSubstr("--client-years"));
}

TEST(BootstrapTest, RsaKeysAndShortValidity) {
  ScratchDir scratch;
  PkiInitOptions o = Options(scratch.path());
  o.key_type = KeyType::kRsa2048;
  o.client_years = 1;
  o.server_years = 2;
  absl::StatusOr<PkiInitResult> r = InitConnectorPki(o);
  ASSERT_TRUE(r.ok()) << r.status();
  auto p12 = LoadPkcs12(AsBytes(*ReadFileToString(scratch.path() / kClientPfxFile)), r->client_password);
  ASSERT_TRUE(p12.ok());
  EXPECT_EQ(EVP_PKEY_get_base_id(p12->key.get()), EVP_PKEY_RSA);
  const int64_t days = (NotAfterUnix(p12->cert.get()) - NotBeforeUnix(p12->cert.get()) - 3600) / 86400;
  EXPECT_EQ(days, 365);
}

// Independent readers: the openssl CLI and Java keytool must open client-cert.pfx.
TEST(BootstrapTest, OpensslAndKeytoolReadThePfx) {
  ScratchDir scratch;
  absl::StatusOr<PkiInitResult> r = InitConnectorPki(Options(scratch.path()));
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string pfx = (scratch.path() / kClientPfxFile).string();
  EXPECT_EQ(RunQuiet("openssl pkcs12 -in '" + pfx + "' -noout -passin pass:" + r->client_password), 0);
  EXPECT_NE(RunQuiet("openssl pkcs12 -in '" + pfx + "' -noout -passin pass:wrong"), 0);
  if (access("/usr/bin/keytool", X_OK) != 0) GTEST_SKIP() << "keytool not installed";
  EXPECT_EQ(
      RunQuiet("/usr/bin/keytool -list -storetype PKCS12 -keystore '" + pfx + "' -storepass " + r->client_password), 0);
  EXPECT_NE(RunQuiet("/usr/bin/keytool -list -storetype PKCS12 -keystore '" + pfx + "' -storepass wrongpassword"), 0);
}

}  // namespace
}  // namespace adcsc::pki
