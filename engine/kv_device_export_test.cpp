// KV export and import through backend memory (EngineRequest::export_to,
// KvBuffer::device) instead of host bytes: what `--kv-transport cuda-ipc`
// uses. On the CPU backend, backend memory is host memory, so the same path
// runs here: the slice must hold exactly the bytes a host export holds, and a
// decode engine importing from a slice must continue exactly as one engine
// alone would.

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>

#include "engine/engine.h"
#include "engine/kv_device_staging.h"

namespace baton::engine {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr auto kWait = std::chrono::seconds(60);

std::unique_ptr<Engine> started_engine(int32_t max_batched = 2048) {
  EngineConfig cfg;
  cfg.model = (fs::path(BATON_SOURCE_DIR) / "tests" / "fixtures" / "tiny-llama3").string();
  cfg.threads = 1;
  cfg.num_blocks = 256;
  cfg.max_num_batched_tokens = max_batched;
  auto e = Engine::create(cfg);
  EXPECT_TRUE(e.is_ok()) << e.status().to_string();
  EXPECT_TRUE((*e)->start().is_ok());
  return std::move(*e);
}

struct Output {
  std::map<int32_t, std::vector<int32_t>> tokens;
  std::map<int32_t, SampleResult> first;
  std::map<int32_t, FinishReason> finish;
  RequestInfo info;
};

Output read_all(RequestStream& s) {
  Output o;
  const auto deadline = Clock::now() + kWait;
  for (;;) {
    auto ev = s.next(deadline);
    EXPECT_TRUE(ev.is_ok()) << ev.status().to_string();
    if (!ev.is_ok()) return o;
    for (auto& d : ev->deltas) {
      auto& t = o.tokens[d.index];
      t.insert(t.end(), d.token_ids.begin(), d.token_ids.end());
      if (!d.logprobs.empty() && o.first.count(d.index) == 0) o.first[d.index] = d.logprobs[0];
      if (d.finish != FinishReason::kNone) o.finish[d.index] = d.finish;
    }
    o.info = ev->info;
    if (ev->done) return o;
  }
}

EngineRequest request(int n, int salt, int32_t max_tokens) {
  EngineRequest r;
  for (int i = 0; i < n; ++i) r.prompt.push_back(3 + (i * 37 + salt * 101) % 800);
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  r.params.temperature = 0;
  return r;
}

// Prefill-only on `p`, exported into `slice` when it is set.
Output prefill(Engine& p, EngineRequest r, int32_t from, KvDeviceSlice slice = {}) {
  r.prefill_only = true;
  r.export_from_token = from;
  r.params.logprobs = 0;
  r.export_to = std::move(slice);
  auto s = p.submit(std::move(r));
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return read_all(**s);
}

class KvDeviceExport : public ::testing::Test {
 protected:
  void SetUp() override {
    mixed_ = started_engine();
    prefill_ = started_engine(64);  // long prompts prefill in chunks
    decode_ = started_engine();
  }
  // The areas outlive the engines (declared first, destroyed last).
  std::vector<std::byte> p_area_ = std::vector<std::byte>(1 << 20);
  std::vector<std::byte> d_area_ = std::vector<std::byte>(1 << 20);
  KvStagingArena p_arena_{p_area_.data(), p_area_.size()};
  KvStagingArena d_arena_{d_area_.data(), d_area_.size()};
  std::unique_ptr<Engine> mixed_, prefill_, decode_;
};

TEST_F(KvDeviceExport, ASliceHoldsExactlyTheHostExportsBytes) {
  const EngineRequest r = request(150, 1, 4);
  Output host = prefill(*prefill_, r, 0);
  ASSERT_TRUE(host.info.kv_export);
  const auto& bytes = host.info.kv_export->bytes;
  ASSERT_EQ(bytes.size(), 150 * prefill_->kv_bytes_per_token());

  auto slice = p_arena_.take(bytes.size());
  ASSERT_TRUE(slice.is_ok());
  void* where = slice->data;
  std::memset(where, 0xA5, bytes.size());  // poisoned: every byte must be written
  Output dev = prefill(*prefill_, r, 0, std::move(*slice));
  ASSERT_TRUE(dev.info.kv_export);
  const KvBuffer& kv = *dev.info.kv_export;
  EXPECT_TRUE(kv.bytes.empty());
  EXPECT_EQ(kv.device.data, where);
  EXPECT_EQ(kv.first_token, 0);
  EXPECT_EQ(kv.num_tokens, 150);
  EXPECT_EQ(std::memcmp(kv.device.data, bytes.data(), bytes.size()), 0);
  EXPECT_EQ(dev.tokens, host.tokens);
}

TEST_F(KvDeviceExport, ImportFromASliceContinuesExactlyAsOneEngine) {
  for (int len : {5, 16, 200}) {
    const EngineRequest r = request(len, len, 12);
    auto mixed = mixed_->submit(r);
    ASSERT_TRUE(mixed.is_ok());
    Output want = read_all(**mixed);

    auto h = decode_->reserve_import(r, Clock::now() + kWait);
    ASSERT_TRUE(h.is_ok()) << h.status().to_string();
    auto ps = p_arena_.take(h->kv_bytes);
    ASSERT_TRUE(ps.is_ok());
    Output first = prefill(*prefill_, r, h->cached_tokens, std::move(*ps));
    ASSERT_TRUE(first.info.kv_export);
    // What the transport does: the bytes move from the prefill side's slice
    // into a slice of the decode side's area.
    auto ds = d_arena_.take(h->kv_bytes);
    ASSERT_TRUE(ds.is_ok());
    std::memcpy(ds->data, first.info.kv_export->device.data, h->kv_bytes);
    auto landed = std::make_shared<KvBuffer>();
    landed->device = std::move(*ds);
    landed->first_token = h->cached_tokens;
    landed->num_tokens = h->prompt_tokens - h->cached_tokens;
    first.info.kv_export.reset();

    std::vector<FirstTokenIn> tokens;
    for (auto& [idx, s] : first.first) {
      FirstTokenIn t;
      t.seq_index = idx;
      t.sample = s;
      tokens.push_back(t);
    }
    decode_->deliver_first_tokens(h->id, tokens);
    decode_->import_kv(h->id, std::move(landed));
    Output got = read_all(*h->stream);
    EXPECT_EQ(got.tokens, want.tokens) << "prompt of " << len;
    EXPECT_EQ(got.finish, want.finish);
  }
  // Every slice went back once its request was over.
  mixed_->stop();
  prefill_->stop();
  decode_->stop();
  EXPECT_EQ(p_arena_.used(), 0u);
  EXPECT_EQ(d_arena_.used(), 0u);
}

TEST_F(KvDeviceExport, ASliceTooSmallForTheKvExportsNothing) {
  const EngineRequest r = request(40, 3, 2);
  auto slice = p_arena_.take(10);  // far less than 40 tokens of KV
  ASSERT_TRUE(slice.is_ok());
  Output o = prefill(*prefill_, r, 0, std::move(*slice));
  EXPECT_FALSE(o.info.kv_export);
  prefill_->stop();
  EXPECT_EQ(p_arena_.used(), 0u);
}

}  // namespace
}  // namespace baton::engine
