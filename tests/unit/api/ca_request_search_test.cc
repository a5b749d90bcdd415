// CaRequestSearch: how a node finds the CA's answer to a submit whose answer was lost (its
// node died, or the connection dropped after the CA took it), by reading request IDs.
#include "node/api/ca_request_search.h"

#include <gtest/gtest.h>

#include "node/ca/hresult.h"
#include "node/pki/csr.h"
#include "node/pki/keys.h"
#include "tests/testing/fake_ca_backend.h"

namespace adcsc::node {
namespace {

class CaRequestSearchTest : public ::testing::Test {
 protected:
  void SetUp() override { ca_.real_certs = true; }

  std::vector<uint8_t> Csr(const std::string& cn) {
    auto key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kEcP256);
    EXPECT_TRUE(key.ok());
    auto der = adcsc::pki::MakeCsr(key->get(), cn, {});
    EXPECT_TRUE(der.ok());
    return *der;
  }
  // Has the CA take `count` requests for other keys; returns the last ID.
  uint32_t Others(int count) {
    uint32_t last = 0;
    const auto csr = Csr("someone-else");
    for (int i = 0; i < count; ++i) last = Submit(csr);
    return last;
  }
  uint32_t Submit(const std::vector<uint8_t>& csr) {
    adcsc::ca::SubmitRequest r;
    r.target = {"dc", "ca"};
    r.caller = {"EXAMPLE\\svc"};
    r.csr_der = csr;
    auto answer = ca_.Submit(r);
    EXPECT_TRUE(answer.ok()) << answer.status();
    return answer.ok() ? answer->request_id : 0;
  }
  CaRequestSearch Search(const std::vector<uint8_t>& csr, uint32_t after, int limit = 256,
                         std::function<bool(uint32_t)> known = nullptr) {
    return CaRequestSearch(&ca_, {"dc", "ca"}, {"EXAMPLE\\svc"}, csr, after, limit, std::move(known));
  }

  adcsc::testing::FakeCaBackend ca_;
};

TEST_F(CaRequestSearchTest, FindsTheLostRequestAmongLaterOnes) {
  const uint32_t after = Others(5);
  const auto mine = Csr("device-1");
  const uint32_t id = Submit(mine);
  Others(3);
  auto search = Search(mine, after);
  auto found = search.Pass();
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->request_id, id);
  EXPECT_FALSE((*found)->cert_der.empty());
}

TEST_F(CaRequestSearchTest, AStaleStartingPointCostsAFewDozenReadsNotThousands) {
  Others(2000);
  const auto mine = Csr("device-1");
  const uint32_t id = Submit(mine);
  Others(2);
  auto search = Search(mine, /*after=*/0);
  auto found = search.Pass();
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->request_id, id);
  EXPECT_LT(search.ca_reads(), 40) << "doubling and bisection find the end, then a short read back";
}

TEST_F(CaRequestSearchTest, ALaterPassReadsOnlyWhatTheCaAddedSince) {
  const uint32_t after = Others(4);
  const auto mine = Csr("device-1");
  auto search = Search(mine, after);
  auto first = search.Pass();
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->has_value()) << "not at the CA yet";
  const int reads = search.ca_reads();
  const uint32_t id = Submit(mine);  // the dead node's request reaches the CA late
  auto second = search.Pass();
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->request_id, id);
  EXPECT_EQ(search.ca_reads(), reads + 1);
}

TEST_F(CaRequestSearchTest, KnownRequestsCostNoCaCallAndForeignOnesAreSkipped) {
  const uint32_t after = Others(1);
  Others(3);  // IDs 2..4: 2 and 3 known to the cluster, 4 another identity's
  ca_.MarkForeign(4);
  const auto mine = Csr("device-1");
  const uint32_t id = Submit(mine);
  auto search = Search(mine, after, 256, [](uint32_t i) { return i == 2 || i == 3; });
  auto found = search.Pass();
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->request_id, id);
  const int retrieves = ca_.retrieves();
  EXPECT_EQ(retrieves, search.ca_reads());
  EXPECT_LE(retrieves, 4) << "IDs 2 and 3 were not read from the CA";
}

TEST_F(CaRequestSearchTest, PendingRequestsCannotBeRecognisedAndTheLimitHolds) {
  const auto mine = Csr("device-1");
  ca_.submit_disposition = adcsc::ca::Disposition::kUnderSubmission;
  Submit(mine);
  Others(50);
  auto search = Search(mine, 0, /*limit=*/10);
  auto found = search.Pass();
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  EXPECT_EQ(search.ca_reads(), 10);
  EXPECT_TRUE(search.exhausted());
  auto again = search.Pass();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(search.ca_reads(), 10);
}

TEST_F(CaRequestSearchTest, ACaFailureEndsTheSearchWithItsError) {
  Others(3);
  ca_.fail_hresult = adcsc::ca::hr::kRpcServerUnavailable;
  auto search = Search(Csr("device-1"), 0);
  auto found = search.Pass();
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(adcsc::ca::HresultOf(found.status()), adcsc::ca::hr::kRpcServerUnavailable);
}

}  // namespace
}  // namespace adcsc::node
