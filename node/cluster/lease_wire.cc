#include "node/cluster/lease_wire.h"

namespace adcsc::cluster {

namespace v1 = adcsc::cluster::v1;

void IntentToWire(const node::SubmitIntent& in, v1::SubmitIntent* out) {
  out->set_ca_config(in.ca_config);
  out->set_template_name(in.template_name);
  out->set_csr_sha256(in.csr_sha256);
  out->set_after_request_id(in.after_request_id);
  out->set_ca_identity(in.ca_identity);
  out->set_claim_id(in.claim_id);
  out->set_ballot_ms(in.ballot_ms);
  out->set_node_id(in.node_id);
}

node::SubmitIntent IntentFromWire(const v1::SubmitIntent& in) {
  node::SubmitIntent out;
  out.ca_config = in.ca_config();
  out.template_name = in.template_name();
  out.csr_sha256 = in.csr_sha256();
  out.after_request_id = in.after_request_id();
  out.ca_identity = in.ca_identity();
  out.claim_id = in.claim_id();
  out.ballot_ms = in.ballot_ms();
  out.node_id = in.node_id();
  return out;
}

void AnswerToWire(const node::LeaseAnswer& in, v1::AnnounceSubmitResponse* out) {
  switch (in.grant) {
    case node::LeaseGrant::kGranted:
      out->set_grant(v1::LEASE_GRANTED);
      break;
    case node::LeaseGrant::kHeld:
      out->set_grant(v1::LEASE_HELD);
      break;
    case node::LeaseGrant::kRestarting:
      out->set_grant(v1::LEASE_RESTARTING);
      break;
  }
  if (in.holder.has_value()) IntentToWire(*in.holder, out->mutable_holder());
  if (in.lapsed.has_value()) IntentToWire(*in.lapsed, out->mutable_lapsed());
  out->set_started_ms(in.started_ms);
}

node::LeaseAnswer AnswerFromWire(const v1::AnnounceSubmitResponse& in, const std::string& from_node) {
  node::LeaseAnswer out;
  out.node_id = from_node;
  switch (in.grant()) {
    case v1::LEASE_GRANTED:
      out.grant = node::LeaseGrant::kGranted;
      break;
    case v1::LEASE_HELD:
      out.grant = in.has_holder() ? node::LeaseGrant::kHeld : node::LeaseGrant::kRestarting;
      break;
    default:
      out.grant = node::LeaseGrant::kRestarting;
      break;
  }
  if (in.has_holder()) out.holder = IntentFromWire(in.holder());
  if (in.has_lapsed()) out.lapsed = IntentFromWire(in.lapsed());
  out.started_ms = in.started_ms();
  return out;
}

}  // namespace adcsc::cluster
