// The submit-lease messages of the Peer service (cluster.proto: SubmitIntent, LeaseGrant) to
// and from node::SubmitIntent and node::LeaseAnswer. Pure functions; thread-safe.
#pragma once

#include <string>

#include "adcsc/cluster/v1/cluster.pb.h"
#include "node/api/submit_leases.h"

namespace adcsc::cluster {

void IntentToWire(const node::SubmitIntent& in, adcsc::cluster::v1::SubmitIntent* out);
node::SubmitIntent IntentFromWire(const adcsc::cluster::v1::SubmitIntent& in);

void AnswerToWire(const node::LeaseAnswer& in, adcsc::cluster::v1::AnnounceSubmitResponse* out);
// `from_node`: the authenticated peer that answered. An answer without a grant (an older
// node) reads as kRestarting: no vote.
node::LeaseAnswer AnswerFromWire(const adcsc::cluster::v1::AnnounceSubmitResponse& in, const std::string& from_node);

}  // namespace adcsc::cluster
