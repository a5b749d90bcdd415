// Bridges std::string_view and absl::string_view. Debian 12's abseil is built with its own
// absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), which does not convert from
// std::string_view, so StrCat and friends need these. Thread-safety: pure functions.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace adcsc::pki {

inline absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view StdView(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace adcsc::pki
