// Needs a GPU: skipped with a message where none is visible.

#include <gtest/gtest.h>

#include "kernels/cuda/device.h"

namespace baton::kernels::cuda {
namespace {

TEST(CudaDevice, ListsGpusWithTheirProperties) {
  auto gpus = list_gpus();
  if (!gpus.is_ok()) GTEST_SKIP() << "no GPU here: " << gpus.status().message();
  ASSERT_FALSE(gpus->empty());
  for (const auto& g : *gpus) {
    EXPECT_FALSE(g.name.empty());
    EXPECT_GE(g.compute_major, 7);
    EXPECT_GT(g.multiprocessors, 0);
    EXPECT_GT(g.total_memory, g.free_memory / 2);
  }
}

TEST(CudaDevice, CopyBandwidthIsMeasuredAndPlausible) {
  auto gpus = list_gpus();
  if (!gpus.is_ok()) GTEST_SKIP() << "no GPU here: " << gpus.status().message();
  auto bw = measure_copy_bandwidth(0, uint64_t{1} << 28, 5);
  ASSERT_TRUE(bw.is_ok()) << bw.status().to_string();
  // Any GPU Baton targets moves between 100 GB/s and 20 TB/s.
  EXPECT_GT(*bw, 1e11);
  EXPECT_LT(*bw, 2e13);
}

TEST(CudaDevice, BadArgumentsAreErrorsNotCrashes) {
  EXPECT_FALSE(measure_copy_bandwidth(0, 8).is_ok());
  EXPECT_FALSE(measure_copy_bandwidth(0, 1 << 20, 0).is_ok());
}

}  // namespace
}  // namespace baton::kernels::cuda
