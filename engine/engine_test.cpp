// The engine end to end on the fixture models, on the CPU: transformers'
// greedy tokens through the scheduler, and outputs that do not depend on
// batching, prefix caching, chunking or preemption. The bodies live in
// engine_test_cases.h; engine_cuda_test.cpp runs them on the GPU.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "engine/engine_test_cases.h"

namespace baton::engine {
namespace {

using namespace test_cases;

class EngineFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(EngineFixture, GreedyMatchesTransformersWithAllPromptsInFlight) {
  greedy_matches_transformers(kCpu, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, EngineFixture,
                         ::testing::Values("tiny-llama3", "tiny-qwen2", "tiny-llama2",
                                           "tiny-mistral"));

TEST(Engine, OutputIsTheSameAloneOrInABatchOf16) {
  output_is_the_same_alone_or_in_a_batch_of_16(kCpu);
}

TEST(Engine, PrefixCacheChunkingAndPreemptionDoNotChangeOutputs) {
  prefix_cache_chunking_and_preemption_do_not_change_outputs(kCpu);
}

TEST(Engine, SeededSamplingIsReproducibleWhateverTheBatch) {
  seeded_sampling_is_reproducible_whatever_the_batch(kCpu);
}

TEST(Engine, StopStringsEndTheTextAndAreNeverStreamedPartially) {
  stop_strings_end_the_text_and_are_never_streamed_partially(kCpu);
}

TEST(Engine, CancelEndsTheStreamAndFreesKv) { cancel_ends_the_stream_and_frees_kv(kCpu); }

TEST(Engine, RejectsBadRequestsWithTheField) { rejects_bad_requests_with_the_field(kCpu); }

// The built-in default model (models/baton-tiny, trained by
// tools/train_tiny.py) against transformers' greedy outputs for it, its
// prompts encoded by its own tokenizer.
TEST(BuiltInModel, GreedyMatchesTransformers) {
  greedy_matches_transformers(
      kCpu, "baton-tiny",
      (std::filesystem::path(BATON_SOURCE_DIR) / "models" / "baton-tiny").string());
}

}  // namespace
}  // namespace baton::engine
