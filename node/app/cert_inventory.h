// Every certificate a node owns or trusts, read from the files its configuration names, with
// its expiry: the API identity, the API's client CAs, the ops identity and the admin CAs, the
// cluster identity and the cluster CA, and each allowlisted CA's certificate file
// (ca.allow[].ca_cert_file) when one is configured. Health, /metrics (adcsc_certificate_expiry_seconds)
// and `adcsc ctl certs` report them; the pinned Jamf Pro client certificates are added by the
// running node as clients present them (a pin is only a hash).
#pragma once

#include <vector>

#include "node/config/config.h"
#include "node/ops/health.h"

namespace adcsc::node {

// Unreadable files are skipped (the configuration check reports them).
std::vector<adcsc::ops::CertificateExpiry> CertificateInventory(const Config& config);

}  // namespace adcsc::node
