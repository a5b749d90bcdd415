// Between a node's own state and the cluster status page: what Peer.Info reports of the
// node's health and API activity (NodeInfo.health, NodeInfo.activity), and the page's model
// of a node from a NodeInfo, its own or a peer's. Pure conversions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "adcsc/cluster/v1/cluster.pb.h"
#include "node/ops/activity.h"
#include "node/ops/health.h"
#include "node/ops/status_page.h"

namespace adcsc::node {

// Sets reply->health from the node's report and service mode, and health_reported.
void FillNodeHealth(const ops::HealthReport& report, std::string_view mode, cluster::v1::NodeInfo* reply);

// Sets reply->activity from the activity log's snapshot, and activity_reported.
void FillNodeActivity(const ops::ActivitySnapshot& activity, cluster::v1::NodeInfo* reply);

// The page's model of the node that answered `info`, asked at `address`.
ops::StatusPageNode StatusPageNodeOf(const cluster::v1::NodeInfo& info, const std::string& address);

}  // namespace adcsc::node
