#include "node/pki/openssl_ptr.h"

#include <openssl/err.h>

namespace adcsc::pki {

std::string LastOpenSslError() {
  std::string out;
  const char* data = nullptr;
  int flags = 0;
  unsigned long code = 0;
  while ((code = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
    if (data != nullptr && (flags & ERR_TXT_STRING) != 0 && data[0] != '\0') {
      out += " (";
      out += data;
      out += ")";
    }
  }
  if (out.empty()) out = "no OpenSSL error detail";
  return out;
}

std::string OpenSslFailure(std::string_view what) {
  std::string out(what);
  out += ": ";
  out += LastOpenSslError();
  return out;
}

}  // namespace adcsc::pki
