#include "node/pki/csr.h"

#include <arpa/inet.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>

#include "absl/strings/str_cat.h"
#include "node/pki/absl_view.h"
#include "node/pki/keys.h"
#include "node/pki/x509.h"

namespace adcsc::pki {
namespace {
constexpr absl::string_view kNotPkcs10 = "pkcs10 is not a DER PKCS#10 request";
}  // namespace

absl::StatusOr<ParsedCsr> ParseCsr(ByteView der) {
  if (der.empty()) return absl::InvalidArgumentError(absl::StrCat(kNotPkcs10, ": it is empty"));
  const unsigned char* p = der.data();
  X509ReqPtr request(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  if (request == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        kNotPkcs10, " (check that it is base64 of the DER form, BEGIN/END lines removed): ", LastOpenSslError()));
  }
  if (p != der.data() + der.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kNotPkcs10, ": ", der.data() + der.size() - p, " unexpected bytes follow the request"));
  }
  EVP_PKEY* key = X509_REQ_get0_pubkey(request.get());
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(kNotPkcs10, ": its public key cannot be decoded: ", LastOpenSslError()));
  }
  ParsedCsr parsed;
  parsed.key_type = KeyAlgorithmName(key);
  parsed.key_bits = EVP_PKEY_get_bits(key);
  parsed.subject = NameToString(X509_REQ_get_subject_name(request.get()));
  parsed.subject_alt_names = SubjectAltNames(request.get());
  parsed.signature_valid = X509_REQ_verify(request.get(), key) == 1;
  ERR_clear_error();
  parsed.request = std::move(request);
  return parsed;
}

absl::StatusOr<ParsedCsr> ParseVerifiedCsr(ByteView der) {
  absl::StatusOr<ParsedCsr> parsed = ParseCsr(der);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->signature_valid) {
    return absl::InvalidArgumentError(absl::StrCat("CSR signature does not verify (the request for \"", parsed->subject,
                                                   "\" was altered or not signed by its own key)"));
  }
  return parsed;
}

namespace {

// One DER element: its tag and where its contents lie. Bounds-checked by ASN1_get_object.
struct Element {
  int tag = 0;
  int xclass = 0;
  bool constructed = false;
  const unsigned char* start = nullptr;     // first byte of the element (its tag)
  const unsigned char* contents = nullptr;  // first byte of its contents
  const unsigned char* end = nullptr;       // one past its last byte
};

// Reads the element at *p (not past `limit`) and advances *p past it.
bool ReadElement(const unsigned char** p, const unsigned char* limit, Element* out) {
  if (*p >= limit) return false;
  const unsigned char* q = *p;
  long len = 0;
  int tag = 0, xclass = 0;
  const int ret = ASN1_get_object(&q, &len, &tag, &xclass, limit - *p);
  // 0x80: error; 0x21: indefinite length (not DER).
  if ((ret & 0x80) != 0 || ret == 0x21 || len < 0 || len > limit - q) return false;
  out->tag = tag;
  out->xclass = xclass;
  out->constructed = (ret & V_ASN1_CONSTRUCTED) != 0;
  out->start = *p;
  out->contents = q;
  out->end = q + len;
  *p = out->end;
  return true;
}

bool IsSequence(const Element& e) { return e.xclass == V_ASN1_UNIVERSAL && e.tag == V_ASN1_SEQUENCE && e.constructed; }

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(kNotPkcs10, " (check that it is base64 of the DER form, BEGIN/END lines removed): ", what));
}

// A legacy (ASN1_METHOD) key from SubjectPublicKeyInfo bytes, or nullptr for other types.
EvpPkeyPtr DecodeLegacyPublicKey(int pk_nid, const unsigned char* spki, long len) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  const unsigned char* p = spki;
  EvpPkeyPtr key(EVP_PKEY_new());
  if (key == nullptr) return nullptr;
  if (pk_nid == NID_rsaEncryption) {
    RSA* rsa = d2i_RSA_PUBKEY(nullptr, &p, len);
    if (rsa == nullptr || EVP_PKEY_assign_RSA(key.get(), rsa) != 1) {
      RSA_free(rsa);
      return nullptr;
    }
  } else if (pk_nid == NID_X9_62_id_ecPublicKey) {
    EC_KEY* ec = d2i_EC_PUBKEY(nullptr, &p, len);
    if (ec == nullptr || EVP_PKEY_assign_EC_KEY(key.get(), ec) != 1) {
      EC_KEY_free(ec);
      return nullptr;
    }
  } else {
    return nullptr;
  }
#pragma GCC diagnostic pop
  if (p != spki + len) return nullptr;
  return key;
}

// Microsoft's enrollment name/value pair attribute (szOID_ENROLLMENT_NAME_VALUE_PAIR).
constexpr absl::string_view kNameValuePairOid = "1.3.6.1.4.1.311.13.2.1";

std::string OidText(const ASN1_OBJECT* obj) {
  char buf[128];
  const int len = OBJ_obj2txt(buf, sizeof(buf), obj, 1);
  if (len <= 0 || static_cast<size_t>(len) >= sizeof(buf)) return "(unreadable OID)";
  return std::string(buf, static_cast<size_t>(len));
}

std::string StringBytes(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

std::string IpText(const ASN1_OCTET_STRING* ip) {
  char buf[INET6_ADDRSTRLEN] = {};
  const int len = ASN1_STRING_length(ip);
  const unsigned char* data = ASN1_STRING_get0_data(ip);
  if (len == 4 && inet_ntop(AF_INET, data, buf, sizeof(buf)) != nullptr) return buf;
  if (len == 16 && inet_ntop(AF_INET6, data, buf, sizeof(buf)) != nullptr) return buf;
  return absl::StrCat("(", len, "-byte address)");
}

std::string EcCurveName(const EVP_PKEY* key) {
  char name[80] = {};
  size_t len = 0;
  if (EVP_PKEY_get_group_name(key, name, sizeof(name), &len) != 1) {
    ERR_clear_error();
    return "(unknown curve)";
  }
  const char* nist = EC_curve_nid2nist(OBJ_txt2nid(name));
  ERR_clear_error();
  return nist != nullptr ? nist : std::string(name, len);
}

CsrSan SanOf(const GENERAL_NAME* gen) {
  using Type = CsrSan::Type;
  switch (gen->type) {
    case GEN_DNS:
      return {Type::kDns, StringBytes(gen->d.dNSName)};
    case GEN_EMAIL:
      return {Type::kEmail, StringBytes(gen->d.rfc822Name)};
    case GEN_URI:
      return {Type::kUri, StringBytes(gen->d.uniformResourceIdentifier)};
    case GEN_IPADD:
      return {Type::kIp, IpText(gen->d.iPAddress)};
    case GEN_OTHERNAME: {
      const OTHERNAME* other = gen->d.otherName;
      if (OBJ_obj2nid(other->type_id) != NID_ms_upn) return {Type::kOtherName, OidText(other->type_id)};
      const ASN1_TYPE* v = other->value;
      if (v == nullptr || v->type != V_ASN1_UTF8STRING) return {Type::kUpn, "(not a UTF8String)"};
      return {Type::kUpn, StringBytes(v->value.utf8string)};
    }
    case GEN_DIRNAME:
      return {Type::kOther, "directoryName"};
    case GEN_RID:
      return {Type::kOther, "registeredID"};
    case GEN_X400:
      return {Type::kOther, "x400Address"};
    case GEN_EDIPARTY:
      return {Type::kOther, "ediPartyName"};
  }
  return {Type::kOther, "(unknown general name)"};
}

void NoteUndecodable(CsrFacts* facts, absl::string_view what) {
  if (facts->undecodable.empty()) facts->undecodable = std::string(what);
}

// One value of an extension request attribute: Extensions.
void ReadExtensionRequest(const unsigned char* der, long len, CsrFacts* facts) {
  const unsigned char* p = der;
  X509ExtensionStackPtr exts(d2i_X509_EXTENSIONS(nullptr, &p, len));
  if (exts == nullptr || p != der + len) return NoteUndecodable(facts, "an extension request does not decode");
  for (int i = 0; i < sk_X509_EXTENSION_num(exts.get()); ++i) {
    X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts.get(), i);
    const ASN1_OBJECT* obj = X509_EXTENSION_get_object(ext);
    if (OBJ_obj2nid(obj) != NID_subject_alt_name) {
      facts->other_extension_oids.push_back(OidText(obj));
      continue;
    }
    GeneralNamesPtr gens(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
    if (gens == nullptr) {
      NoteUndecodable(facts, "a subjectAltName extension does not decode");
      continue;
    }
    for (int j = 0; j < sk_GENERAL_NAME_num(gens.get()); ++j) {
      facts->subject_alt_names.push_back(SanOf(sk_GENERAL_NAME_value(gens.get(), j)));
    }
  }
}

// A BMPString element at [start, end) as UTF-8.
bool BmpText(const Element& e, std::string* out) {
  if (e.xclass != V_ASN1_UNIVERSAL || e.tag != V_ASN1_BMPSTRING || e.constructed) return false;
  const unsigned char* p = e.start;
  std::unique_ptr<ASN1_STRING, OpenSslDeleter<ASN1_STRING_free>> s(d2i_ASN1_BMPSTRING(nullptr, &p, e.end - e.start));
  if (s == nullptr) return false;
  unsigned char* utf8 = nullptr;
  const int len = ASN1_STRING_to_UTF8(&utf8, s.get());
  if (len < 0) return false;
  out->assign(reinterpret_cast<const char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return true;
}

// One value of a name/value pair attribute: SEQUENCE { name BMPString, value BMPString }.
void ReadNameValuePair(const unsigned char* der, long len, CsrFacts* facts) {
  const unsigned char* p = der;
  const unsigned char* const limit = der + len;
  Element seq, name, value;
  std::pair<std::string, std::string> pair;
  if (!ReadElement(&p, limit, &seq) || !IsSequence(seq) || p != limit) {
    return NoteUndecodable(facts, "a name/value pair attribute does not decode");
  }
  const unsigned char* q = seq.contents;
  if (!ReadElement(&q, seq.end, &name) || !ReadElement(&q, seq.end, &value) || q != seq.end ||
      !BmpText(name, &pair.first) || !BmpText(value, &pair.second)) {
    return NoteUndecodable(facts, "a name/value pair attribute does not decode");
  }
  facts->name_value_pairs.push_back(std::move(pair));
}

void ReadAttribute(X509_ATTRIBUTE* attr, CsrFacts* facts) {
  const ASN1_OBJECT* obj = X509_ATTRIBUTE_get0_object(attr);
  const int nid = OBJ_obj2nid(obj);
  const bool extension_request = nid == NID_ext_req || nid == NID_ms_ext_req;
  const bool name_value = !extension_request && OidText(obj) == kNameValuePairOid;
  if (!extension_request && !name_value) return;
  for (int i = 0; i < X509_ATTRIBUTE_count(attr); ++i) {
    const ASN1_TYPE* value = X509_ATTRIBUTE_get0_type(attr, i);
    if (value == nullptr || value->type != V_ASN1_SEQUENCE) {
      NoteUndecodable(facts, "an extension request or name/value pair attribute is not a SEQUENCE");
      continue;
    }
    const ASN1_STRING* seq = value->value.sequence;
    if (extension_request) {
      ReadExtensionRequest(ASN1_STRING_get0_data(seq), ASN1_STRING_length(seq), facts);
    } else {
      ReadNameValuePair(ASN1_STRING_get0_data(seq), ASN1_STRING_length(seq), facts);
    }
  }
}

// The facts of a verified request from its parts.
CsrFacts FactsOf(const EVP_PKEY* key, const X509_NAME* subject, const std::vector<X509_ATTRIBUTE*>& attributes) {
  CsrFacts facts;
  facts.key_type = KeyAlgorithmName(key);
  facts.key_bits = EVP_PKEY_get_bits(key);
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) facts.ec_curve = EcCurveName(key);
  facts.subject = NameToString(subject);
  for (X509_ATTRIBUTE* attr : attributes) ReadAttribute(attr, &facts);
  ERR_clear_error();
  return facts;
}

CsrFacts FactsOf(const ParsedCsr& parsed) {
  std::vector<X509_ATTRIBUTE*> attributes;
  for (int i = 0; i < X509_REQ_get_attr_count(parsed.request.get()); ++i) {
    attributes.push_back(X509_REQ_get_attr(parsed.request.get(), i));
  }
  return FactsOf(X509_REQ_get0_pubkey(parsed.request.get()), X509_REQ_get_subject_name(parsed.request.get()),
                 attributes);
}

using X509AttributePtr = std::unique_ptr<X509_ATTRIBUTE, OpenSslDeleter<X509_ATTRIBUTE_free>>;

}  // namespace

absl::StatusOr<CsrFacts> CheckCsr(ByteView der) {
  if (der.empty()) return absl::InvalidArgumentError(absl::StrCat(kNotPkcs10, ": it is empty"));
  const unsigned char* p = der.data();
  const unsigned char* const limit = der.data() + der.size();
  Element outer, tbs, version, subject, spki, sig_alg, signature;
  if (!ReadElement(&p, limit, &outer) || !IsSequence(outer)) return Malformed("no outer SEQUENCE");
  if (p != limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(kNotPkcs10, ": ", limit - p, " unexpected bytes follow the request"));
  }
  const unsigned char* in_outer = outer.contents;
  if (!ReadElement(&in_outer, outer.end, &tbs) || !IsSequence(tbs)) return Malformed("no CertificationRequestInfo");
  const unsigned char* in_tbs = tbs.contents;
  if (!ReadElement(&in_tbs, tbs.end, &version) || version.tag != V_ASN1_INTEGER || version.constructed) {
    return Malformed("no version");
  }
  if (!ReadElement(&in_tbs, tbs.end, &subject) || !IsSequence(subject)) return Malformed("no subject");
  if (!ReadElement(&in_tbs, tbs.end, &spki) || !IsSequence(spki)) return Malformed("no SubjectPublicKeyInfo");
  // The subject must be a valid Name, and what follows the key the [0] attribute set.
  X509NamePtr subject_name;
  {
    const unsigned char* q = subject.start;
    subject_name.reset(d2i_X509_NAME(nullptr, &q, subject.end - subject.start));
    if (subject_name == nullptr || q != subject.end) return Malformed("the subject is not a valid Name");
  }
  std::vector<X509AttributePtr> attributes;
  if (in_tbs != tbs.end) {
    Element attrs;
    if (!ReadElement(&in_tbs, tbs.end, &attrs) || attrs.xclass != V_ASN1_CONTEXT_SPECIFIC || attrs.tag != 0 ||
        !attrs.constructed || in_tbs != tbs.end) {
      return Malformed("bad attributes");
    }
    const unsigned char* q = attrs.contents;
    while (q < attrs.end) {
      X509AttributePtr attr(d2i_X509_ATTRIBUTE(nullptr, &q, attrs.end - q));
      if (attr == nullptr) return Malformed("bad attribute");
      attributes.push_back(std::move(attr));
    }
  }
  if (!ReadElement(&in_outer, outer.end, &sig_alg) || !IsSequence(sig_alg)) return Malformed("no signature algorithm");
  if (!ReadElement(&in_outer, outer.end, &signature) || signature.tag != V_ASN1_BIT_STRING || in_outer != outer.end) {
    return Malformed("no signature");
  }

  const unsigned char* q = sig_alg.start;
  X509AlgorPtr alg(d2i_X509_ALGOR(nullptr, &q, sig_alg.end - sig_alg.start));
  q = signature.start;
  Asn1BitStringPtr sig(d2i_ASN1_BIT_STRING(nullptr, &q, signature.end - signature.start));
  ERR_clear_error();
  if (alg == nullptr || sig == nullptr) return Malformed("bad signature algorithm or value");
  const int sig_nid = OBJ_obj2nid(alg->algorithm);
  int md_nid = NID_undef, pk_nid = NID_undef;
  const EVP_MD* md = nullptr;
  if (OBJ_find_sigid_algs(sig_nid, &md_nid, &pk_nid) == 1) md = EVP_get_digestbynid(md_nid);
  // RSA PKCS#1 v1.5 takes NULL or absent parameters; ECDSA takes none.
  int param_type = V_ASN1_UNDEF;
  X509_ALGOR_get0(nullptr, &param_type, nullptr, alg.get());
  const bool plain_params = param_type == V_ASN1_UNDEF || param_type == V_ASN1_NULL;
  EvpPkeyPtr key;
  if (md != nullptr && plain_params && (pk_nid == NID_rsaEncryption || pk_nid == NID_X9_62_id_ecPublicKey)) {
    key = DecodeLegacyPublicKey(pk_nid, spki.start, spki.end - spki.start);
    ERR_clear_error();
  }
  if (key == nullptr) {
    // Other algorithms (RSA-PSS, EdDSA, ...) or a key type that does not match the
    // signature: let OpenSSL's full parser decide and explain.
    absl::StatusOr<ParsedCsr> parsed = ParseVerifiedCsr(der);
    if (!parsed.ok()) return parsed.status();
    return FactsOf(*parsed);
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  const bool verified = ctx != nullptr && EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key.get()) == 1 &&
                        EVP_DigestVerify(ctx.get(), sig->data, static_cast<size_t>(sig->length), tbs.start,
                                         static_cast<size_t>(tbs.end - tbs.start)) == 1;
  ERR_clear_error();
  if (!verified) {
    return absl::InvalidArgumentError(absl::StrCat("CSR signature does not verify (the request for \"",
                                                   NameToString(subject_name.get()),
                                                   "\" was altered or not signed by its own key)"));
  }
  std::vector<X509_ATTRIBUTE*> attribute_views;
  for (const X509AttributePtr& attr : attributes) attribute_views.push_back(attr.get());
  return FactsOf(key.get(), subject_name.get(), attribute_views);
}

absl::StatusOr<Bytes> CsrToDer(X509_REQ* request) {
  if (request == nullptr) return absl::InvalidArgumentError("CsrToDer: no request");
  const int len = i2d_X509_REQ(request, nullptr);
  if (len <= 0) return absl::InternalError(OpenSslFailure("encoding the request as DER"));
  Bytes der(static_cast<size_t>(len));
  unsigned char* p = der.data();
  if (i2d_X509_REQ(request, &p) != len) {
    return absl::InternalError(OpenSslFailure("encoding the request as DER"));
  }
  return der;
}

absl::StatusOr<Bytes> MakeCsr(EVP_PKEY* key, std::string common_name, std::vector<std::string> dns_sans) {
  if (key == nullptr) return absl::InvalidArgumentError("MakeCsr: no key");
  X509ReqPtr request(X509_REQ_new());
  if (request == nullptr) return absl::InternalError(OpenSslFailure("X509_REQ_new"));
  if (X509_REQ_set_version(request.get(), X509_REQ_VERSION_1) != 1) {
    return absl::InternalError(OpenSslFailure("X509_REQ_set_version"));
  }
  absl::StatusOr<X509NamePtr> name = CommonNameOnly(common_name);
  if (!name.ok()) return name.status();
  if (X509_REQ_set_subject_name(request.get(), name->get()) != 1 || X509_REQ_set_pubkey(request.get(), key) != 1) {
    return absl::InternalError(OpenSslFailure("filling in the request"));
  }
  if (!dns_sans.empty()) {
    absl::StatusOr<GeneralNamesPtr> sans = BuildSubjectAltNames(dns_sans);
    if (!sans.ok()) return sans.status();
    X509ExtensionStackPtr exts(sk_X509_EXTENSION_new_null());
    X509ExtensionPtr ext(X509V3_EXT_i2d(NID_subject_alt_name, 0, sans->get()));
    if (exts == nullptr || ext == nullptr || sk_X509_EXTENSION_push(exts.get(), ext.get()) == 0) {
      return absl::InternalError(OpenSslFailure("building the extension request"));
    }
    ext.release();  // now owned by `exts`
    if (X509_REQ_add_extensions(request.get(), exts.get()) != 1) {
      return absl::InternalError(OpenSslFailure("X509_REQ_add_extensions"));
    }
  }
  const int id = EVP_PKEY_get_base_id(key);
  const EVP_MD* md = (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) ? nullptr : EVP_sha256();
  if (X509_REQ_sign(request.get(), key, md) <= 0) {
    return absl::InternalError(OpenSslFailure("signing the request"));
  }
  return CsrToDer(request.get());
}

absl::StatusOr<bool> CertifiesCsrKey(ByteView cert_der, ByteView csr_der) {
  absl::StatusOr<ParsedCsr> csr = ParseCsr(csr_der);
  if (!csr.ok()) return csr.status();
  absl::StatusOr<X509Ptr> cert = CertFromDer(cert_der);
  if (!cert.ok()) return cert.status();
  EVP_PKEY* cert_key = X509_get0_pubkey(cert->get());
  EVP_PKEY* csr_key = X509_REQ_get0_pubkey(csr->request.get());
  const bool same = cert_key != nullptr && csr_key != nullptr && EVP_PKEY_eq(cert_key, csr_key) == 1;
  ERR_clear_error();
  return same;
}

}  // namespace adcsc::pki
