// Keeps gRPC's process-wide callback completion queue alive for the whole test binary.
//
// Why: Debian's gRPC 1.51 serves the callback API (our peer lookups, Pull, Snapshot, Info) from
// one process-global completion queue when its I/O manager does not run in the background,
// which is the case on Linux. Every channel takes a reference on its first callback call and
// drops it when destroyed; at zero gRPC shuts the queue down and deletes it, and a later call
// creates a new one. Tests that build and destroy a cluster per case run that teardown over
// and over, and it races inside gRPC: ASan caught a double free in grpc_cq_internal_unref on
// one of gRPC's own threads (cluster_replication_test, once in about a dozen runs; the same
// race is described in couchbase-cxx-client PR #1060). A node never meets it: its channels
// live as long as it does. Holding one channel that has made a callback call keeps the count
// above zero, so the teardown runs once, at exit.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <future>

#include "adcsc/cluster/v1/cluster.grpc.pb.h"

namespace adcsc::cluster {
namespace {

class KeepCallbackQueueAlive : public ::testing::Environment {
 public:
  void SetUp() override {
    // Nothing listens on port 1: the call fails at once, after taking the queue's reference.
    static const std::shared_ptr<grpc::Channel>* channel =
        new std::shared_ptr<grpc::Channel>(grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()));
    auto stub = v1::Peer::NewStub(*channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::NodeInfoRequest request;
    v1::NodeInfo reply;
    std::promise<void> done;
    stub->async()->Info(&context, &request, &reply, [&done](grpc::Status) { done.set_value(); });
    done.get_future().wait();
  }
};

const auto* const kRegistered = ::testing::AddGlobalTestEnvironment(new KeepCallbackQueueAlive);

}  // namespace
}  // namespace adcsc::cluster
