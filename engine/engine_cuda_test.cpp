// The engine's behavioural tests (engine_test_cases.h, the bodies
// engine_test.cpp runs on the CPU) on device "cuda", twice: with f32
// arithmetic on the GPU, where every output must be identical token for
// token as on the CPU, and with bf16 (what `--device cuda` serves), where
// outputs must be identical up to the first step whose greedy decision is
// within bf16 noise (see engine_test_cases.h).
//
// Needs a GPU: skipped with a message where none is visible.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "engine/engine_test_cases.h"

namespace baton::engine {
namespace {

using namespace test_cases;

struct GpuTarget {
  const char* name;
  EngineTarget target;
};

// bf16 keeps 8 bits: per-op rounding of ~4e-3 through two layers and the LM
// head; logits are within a few hundredths of f32 ones
// (llama_model_cuda_test's Bf16LogitsWithinTolerance).
const GpuTarget kTargets[] = {
    {"f32", {.device = "cuda", .cuda_dtype = DType::kF32, .bf16_tolerance = 0}},
    {"bf16", {.device = "cuda", .cuda_dtype = DType::kBF16, .bf16_tolerance = 0.05}},
};

// Skips the test unless an engine can run on the GPU here.
class GpuEngine : public ::testing::TestWithParam<GpuTarget> {
 protected:
  void SetUp() override {
    static const Status probe = [] {
      EngineConfig cfg;
      cfg.model = fixture("tiny-llama3");
      cfg.device = "cuda";
      cfg.num_blocks = 16;
      return Engine::create(cfg).status();
    }();
    if (!probe.is_ok()) {
      GTEST_SKIP() << "no GPU here (or a build without CUDA): " << probe.to_string();
    }
  }
  const EngineTarget& target() const { return GetParam().target; }
};

std::string target_name(const ::testing::TestParamInfo<GpuTarget>& info) { return info.param.name; }

TEST_P(GpuEngine, GreedyMatchesTransformersWithAllPromptsInFlight) {
  for (const char* model : {"tiny-llama3", "tiny-qwen2", "tiny-llama2", "tiny-mistral"}) {
    SCOPED_TRACE(model);
    greedy_matches_transformers(target(), model);
  }
}

TEST_P(GpuEngine, BuiltInModelGreedyMatchesTransformers) {
  greedy_matches_transformers(
      target(), "baton-tiny",
      (std::filesystem::path(BATON_SOURCE_DIR) / "models" / "baton-tiny").string());
}

TEST_P(GpuEngine, OutputIsTheSameAloneOrInABatchOf16) {
  output_is_the_same_alone_or_in_a_batch_of_16(target());
}

TEST_P(GpuEngine, PrefixCacheChunkingAndPreemptionDoNotChangeOutputs) {
  prefix_cache_chunking_and_preemption_do_not_change_outputs(target());
}

TEST_P(GpuEngine, SeededSamplingIsReproducibleWhateverTheBatch) {
  seeded_sampling_is_reproducible_whatever_the_batch(target());
}

TEST_P(GpuEngine, StopStringsEndTheTextAndAreNeverStreamedPartially) {
  stop_strings_end_the_text_and_are_never_streamed_partially(target());
}

TEST_P(GpuEngine, CancelEndsTheStreamAndFreesKv) { cancel_ends_the_stream_and_frees_kv(target()); }

TEST_P(GpuEngine, RejectsBadRequestsWithTheField) { rejects_bad_requests_with_the_field(target()); }

INSTANTIATE_TEST_SUITE_P(Dtypes, GpuEngine, ::testing::ValuesIn(kTargets), target_name);

}  // namespace
}  // namespace baton::engine
