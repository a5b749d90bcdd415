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

// `pki rotate` from what init wrote: a renewed server certificate on the same key and name (so
// the copy Jamf Pro holds still verifies it), a new client identity whose .pfx opens with the
// new password (OpenSSL's own tool), pins that match the files, both client certificates
// chaining to client-ca.pem, and the config lines with the old pin's end of overlap.
TEST(BootstrapTest, RotateRenewsTheServerOnItsKeyAndMakesANewClientWithAnOverlap) {
  ScratchDir scratch;
  const auto from = scratch.path() / "pki";
  ASSERT_TRUE(InitConnectorPki(Options(from)).ok());
  PkiRotateOptions o;
  o.from_dir = from;
  o.out_dir = scratch.path() / "pki-2";
  o.password_file = scratch.path() / "pki-2.pass";
  o.overlap_days = 14;
  const int64_t now = 1'800'000'000;  // 2027-01-15T08:00:00Z
  o.now_unix_seconds = now;
  absl::StatusOr<PkiRotateResult> r = RotateConnectorPki(o);
  ASSERT_TRUE(r.ok()) << r.status();
  const auto& out = o.out_dir;
  EXPECT_EQ(FileMode(out), 0700u);
  EXPECT_EQ(FileMode(out / kServerKeyFile), 0600u);
  EXPECT_EQ(FileMode(out / kClientPfxFile), 0600u);
  EXPECT_EQ(FileMode(o.password_file), 0600u);
  EXPECT_EQ(FileMode(out / kRotationSnippetFile), 0644u);
  EXPECT_EQ(r->files.size(), 9u);
  EXPECT_TRUE(r->server_key_kept);

  auto old_server = CertFromPem(*ReadFileToString(from / kServerCertPemFile));
  auto new_server = CertFromPem(*ReadFileToString(out / kServerCertPemFile));
  auto old_client = CertFromPem(*ReadFileToString(from / kClientCertPemFile));
  auto new_client = CertFromPem(*ReadFileToString(out / kClientCertPemFile));
  ASSERT_TRUE(old_server.ok() && new_server.ok() && old_client.ok() && new_client.ok());
  EXPECT_NE(X509_cmp(old_server->get(), new_server->get()), 0) << "a new certificate";
  EXPECT_EQ(NotBeforeUnix(new_server->get()), now - 3600);
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(old_server->get()), X509_get_subject_name(new_server->get())), 0);
  EXPECT_EQ(SubjectAltNames(new_server->get()), SubjectAltNames(old_server->get()));
  EXPECT_EQ(ExtendedKeyUsages(new_server->get()), ExtendedKeyUsages(old_server->get()));
  EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(old_server->get()), X509_get0_pubkey(new_server->get())), 1) << "same key";
  // What Jamf Pro's copy (the old certificate) vouches for: this subject with this key. The
  // renewed certificate has both, and its signature verifies with the old certificate's key.
  // (Java's PKIX trust manager accepts it on that basis: tests/integration/test_rotate.py.)
  EXPECT_EQ(X509_verify(new_server->get(), X509_get0_pubkey(old_server->get())), 1);
  // Both client identities chain to client-ca.pem, the overlap's api.client_ca_file.
  auto bundle = CertsFromPem(*ReadFileToString(out / kClientCaBundleFile));
  ASSERT_TRUE(bundle.ok());
  ASSERT_EQ(bundle->size(), 2u);
  std::vector<X509*> roots = {(*bundle)[0].get(), (*bundle)[1].get()};
  EXPECT_TRUE(VerifyChain(new_client->get(), roots, {}, now).ok());
  EXPECT_TRUE(VerifyChain(old_client->get(), roots, {}, now).ok());
  EXPECT_TRUE(VerifyChain(old_client->get(), {new_server->get()}, {}, now).ok()) << "same key and name";

  // Pins and the pfx.
  EXPECT_EQ(*ReadFileToString(from / kClientPinFile), r->old_client_pin + "\n");
  EXPECT_EQ(r->client_pin, CertSha256Hex(new_client->get()));
  EXPECT_EQ(*ReadFileToString(out / kClientPinFile), r->client_pin + "\n");
  EXPECT_NE(r->client_pin, r->old_client_pin);
  EXPECT_EQ(*ReadFileToString(o.password_file), r->client_password + "\n");
  const std::string pfx = (out / kClientPfxFile).string();
  EXPECT_EQ(RunQuiet("openssl pkcs12 -in '" + pfx + "' -noout -passin pass:" + r->client_password), 0);
  auto pfx_bytes = ReadFileToString(out / kClientPfxFile);
  auto contents = LoadPkcs12(AsBytes(*pfx_bytes), r->client_password);
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(CertSha256Hex(contents->cert.get()), r->client_pin);

  // The overlap: to the midnight UTC at least 14 days on, in the config lines.
  EXPECT_EQ(r->overlap_until, "2027-01-30T00:00:00Z");
  EXPECT_EQ(r->overlap_until_unix, 1'801'267'200);
  EXPECT_EQ(*ReadFileToString(out / kRotationSnippetFile), r->snippet);
  EXPECT_THAT(r->snippet, HasSubstr("{ pin = \"" + r->old_client_pin + "\", until = 2027-01-30T00:00:00Z }"));
  EXPECT_THAT(r->snippet, HasSubstr("\"" + r->client_pin + "\","));
  EXPECT_THAT(r->snippet, HasSubstr("\ncert_file = \"" + (out / kServerCertPemFile).string() + "\""));
  EXPECT_THAT(r->snippet, HasSubstr("client_ca_file = \"" + (out / kClientCaBundleFile).string() + "\""));
  EXPECT_THAT(r->snippet, ::testing::Not(HasSubstr(r->client_password)));

  // Never overwrites, and names what is there.
  absl::StatusOr<PkiRotateResult> again = RotateConnectorPki(o);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr(kServerKeyFile));
}

TEST(BootstrapTest, RotateWithANewServerKeyLeavesTheServerSwitchForLater) {
  ScratchDir scratch;
  ASSERT_TRUE(InitConnectorPki(Options(scratch.path() / "pki")).ok());
  PkiRotateOptions o;
  o.from_dir = scratch.path() / "pki";
  o.out_dir = scratch.path() / "pki-2";
  o.new_server_key = true;
  absl::StatusOr<PkiRotateResult> r = RotateConnectorPki(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->server_key_kept);
  auto old_server = CertFromPem(*ReadFileToString(o.from_dir / kServerCertPemFile));
  auto new_server = CertFromPem(*ReadFileToString(o.out_dir / kServerCertPemFile));
  EXPECT_NE(EVP_PKEY_eq(X509_get0_pubkey(old_server->get()), X509_get0_pubkey(new_server->get())), 1);
  EXPECT_THAT(r->snippet, HasSubstr("\n# cert_file = "));
  EXPECT_THAT(r->snippet, HasSubstr("\n# key_file = "));
  auto old_client = CertFromPem(*ReadFileToString(o.from_dir / kClientCertPemFile));
  auto bundle = CertsFromPem(*ReadFileToString(o.out_dir / kClientCaBundleFile));
  ASSERT_TRUE(bundle.ok() && old_client.ok());
  EXPECT_TRUE(VerifyChain(old_client->get(), {(*bundle)[0].get(), (*bundle)[1].get()}).ok());
}

TEST(BootstrapTest, RotateRefusesWhatPkiInitDidNotMake) {
  ScratchDir scratch;
  ASSERT_TRUE(InitConnectorPki(Options(scratch.path() / "pki")).ok());
  ASSERT_TRUE(InitConnectorPki(Options(scratch.path() / "other")).ok());
  // A server certificate that does not belong to server-key.pem.
  std::filesystem::copy_file(scratch.path() / "other" / kServerCertPemFile, scratch.path() / "pki" / kServerCertPemFile,
                             std::filesystem::copy_options::overwrite_existing);
  PkiRotateOptions o;
  o.from_dir = scratch.path() / "pki";
  o.out_dir = scratch.path() / "pki-2";
  absl::StatusOr<PkiRotateResult> r = RotateConnectorPki(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("is not a server identity `adcsc pki init` made"));
  EXPECT_FALSE(std::filesystem::exists(o.out_dir)) << "nothing written";
  o.out_dir = o.from_dir;
  o.overlap_days = 0;
  r = RotateConnectorPki(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("--out must differ from --from"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("--overlap-days 0"));
}

}  // namespace
}  // namespace adcsc::pki
