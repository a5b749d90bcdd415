// The service mode survives a restart, is written atomically with mode 0600, and a damaged
// file is refused with its name rather than guessed at.
#include "node/ops/service_mode.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "tests/testing/temp_dir.h"

namespace adcsc::ops {
namespace {

TEST(ServiceModeTest, AbsentMeansActiveAndASetModeSurvivesAReopen) {
  adcsc::testing::TempDir dir;
  const auto file = dir.path() / kServiceModeFile;
  auto store = ServiceModeStore::Open(file);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->mode(), ServiceMode::kActive);
  ASSERT_TRUE((*store)->Set(ServiceMode::kDrain).ok());
  EXPECT_EQ((*store)->mode(), ServiceMode::kDrain);
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(std::filesystem::exists(file.string() + ".tmp"));

  auto reopened = ServiceModeStore::Open(file);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->mode(), ServiceMode::kDrain) << "a drained node stays drained across a restart";
  ASSERT_TRUE((*reopened)->Set(ServiceMode::kActive).ok());
  EXPECT_EQ((*ServiceModeStore::Open(file))->mode(), ServiceMode::kActive);
}

TEST(ServiceModeTest, ADamagedFileIsRefusedWithItsName) {
  adcsc::testing::TempDir dir;
  const auto file = dir.path() / kServiceModeFile;
  std::ofstream(file) << "sleeping\n";
  auto store = ServiceModeStore::Open(file);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find(file.string()), std::string_view::npos) << store.status();
  EXPECT_NE(store.status().message().find("active, drain or maint"), std::string_view::npos) << store.status();
}

TEST(ServiceModeTest, AFailedWriteLeavesTheModeAsItWas) {
  adcsc::testing::TempDir dir;
  auto store = ServiceModeStore::Open(dir.path() / "missing-dir" / kServiceModeFile);
  ASSERT_TRUE(store.ok());
  const absl::Status s = (*store)->Set(ServiceMode::kMaint);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("missing-dir"), std::string_view::npos) << s;
  EXPECT_EQ((*store)->mode(), ServiceMode::kActive);
}

TEST(ServiceModeTest, NamesRoundTrip) {
  for (ServiceMode m : {ServiceMode::kActive, ServiceMode::kDrain, ServiceMode::kMaint}) {
    EXPECT_EQ(*ParseMode(ModeName(m)), m);
  }
  EXPECT_FALSE(ParseMode("ACTIVE").ok());
}

}  // namespace
}  // namespace adcsc::ops
