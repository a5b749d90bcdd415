// Bulk join over gRPC, the joining side. Before a clustered node opens its store, when that
// store holds nothing (absent, or never written: store/bulk_join.h, StoreIsEmpty), it asks
// its peers one at a time, in configured order, for their whole store (Replication.Join: one
// server stream, the sender's vector first, then every record in key order, all from one read
// transaction) and writes what the first peer with records sends into "<store>.joining", which
// then becomes its store (store::JoinWriter). One thread reads and parses the stream while the
// calling thread writes into SQLite; at most a few chunks wait between them, and gRPC's flow
// control holds the sender back beyond that, so memory stays bounded whatever the store's size.
//
// A peer that is down, fails mid-stream, sends nothing for `idle_timeout`, is serving another
// join, or is an older adcsc without the RPC (UNIMPLEMENTED) is passed over for the next; what
// it left is discarded. When no peer serves a join the store is left as it was (or absent) and
// the node starts as before: its replicator copies snapshot pages. A join cut short by the
// node's own death leaves the .joining file, which the next start removes before starting over.
//
// Thread-safety: JoinIfEmpty runs on the calling thread (plus one reader thread of its own);
// call it while nothing has the store open (a node holds its data directory's lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "node/config/config.h"
#include "store/request_store.h"

namespace adcsc::cluster {

struct BulkJoinOptions {
  // A peer whose first chunk does not come within `first_chunk_timeout` (down, unreachable,
  // or too busy), or that then sends nothing for `idle_timeout`, is given up.
  std::chrono::milliseconds first_chunk_timeout{10'000};
  std::chrono::milliseconds idle_timeout{30'000};
  // Chunks received and not yet written, at most (each about kJoinChunkBytes of records),
  // and the stream's flow-control window: what the network may hold beyond them.
  size_t max_queued_chunks = 2;
  size_t window_bytes = 4 << 20;
  // fsync the joined file and its directory. Tests may turn it off.
  bool fsync = true;
  // SQLite's page cache while writing the file and sorting its indexes, and the extra threads
  // the index sorts may use (store::JoinWriterOptions).
  int64_t cache_bytes = 8 << 20;
  int sort_threads = 0;
  // Called every `progress_every` while records arrive (optional): peer, written, announced.
  std::function<void(const std::string&, int64_t, int64_t)> progress;
  std::chrono::milliseconds progress_every{10'000};
};

struct BulkJoinResult {
  enum class Outcome {
    kNotEmpty,  // the store holds something: no join was tried
    kJoined,    // the store is now the copy of `peer`'s
    kNothing,   // every peer that answered holds nothing either (a new cluster)
    kNoPeer,    // no peer served a join (down, older than the RPC, or failed): see `failures`
  };
  Outcome outcome = Outcome::kNoPeer;
  std::string peer;  // the peer joined from
  int64_t records = 0;
  int64_t held = 0;          // mutations the peer held beyond its vector, logged here
  double seconds = 0;        // the whole call, until the store file is in place
  double index_seconds = 0;  // of which building the secondary indexes
  double sync_seconds = 0;   // and syncing the file
  // While records streamed: how long the writing thread waited for chunks (the peer or the
  // network was behind), and how long the reading thread waited for room (the writer was).
  double starved_seconds = 0;
  double full_seconds = 0;
  std::vector<std::string> failures;  // "peer: why", for every peer passed over
  bool peer_without_join = false;     // a peer answered UNIMPLEMENTED (an older adcsc)
  bool abandoned = false;             // a join began streaming and did not finish
};

// A word for the outcome ("joined", "not_empty", "nothing_to_join", "no_peer"), for logs.
const char* OutcomeName(BulkJoinResult::Outcome outcome);

// See the file comment. Fails only when the existing store cannot be examined (another node's
// file, damage, permissions): the caller's own open of the store reports that better.
absl::StatusOr<BulkJoinResult> JoinIfEmpty(const node::Config& config, const store::StoreOptions& store,
                                           const BulkJoinOptions& options = {});

}  // namespace adcsc::cluster
