// CPU engine throughput against the memory-bandwidth floor, measured in the
// same run.
//
//   engine_cpu_bench [--model dummy:llama-100m] [--threads N] [--steps N]
//
// For each case it times forward passes of the Llama model on the CPU backend
// and divides the bytes a step must read (every weight once, plus the KV of
// every context token) by the machine's measured read bandwidth: the floor.
// "of floor" = floor time / measured time (100% = memory-bound perfection).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "engine/llama_model.h"
#include "model/dummy_model.h"

namespace {

using namespace baton;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Read bandwidth of `threads` threads summing disjoint parts of a buffer much
// larger than the caches; best of several passes, bytes read per second.
double measure_read_bandwidth(int threads) {
  const size_t n = size_t{1} << 27;  // 512 MiB of floats
  std::vector<float> buf(n);
  for (size_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 1023);
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    std::atomic<double> sink{0};
    auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        size_t b = n * static_cast<size_t>(t) / static_cast<size_t>(threads);
        size_t e = n * static_cast<size_t>(t + 1) / static_cast<size_t>(threads);
        float acc[16] = {};
        for (size_t i = b; i + 16 <= e; i += 16) {
          for (int j = 0; j < 16; ++j) acc[j] += buf[i + static_cast<size_t>(j)];
        }
        double s = 0;
        for (float a : acc) s += a;
        double cur = sink.load();
        while (!sink.compare_exchange_weak(cur, cur + s)) {
        }
      });
    }
    for (auto& t : ts) t.join();
    double secs = seconds_since(t0);
    best = std::max(best, static_cast<double>(n * sizeof(float)) / secs);
    if (sink.load() < 0) std::printf("impossible\n");
  }
  return best;
}

struct Case {
  std::string name;
  int batch;
  int context;  // tokens already in each sequence's cache
  int steps;
};

}  // namespace

int main(int argc, char** argv) {
  std::string spec = "dummy:llama-100m";
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  int steps = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--model") spec = argv[i + 1];
    if (a == "--threads") threads = std::stoi(argv[i + 1]);
    if (a == "--steps") steps = std::stoi(argv[i + 1]);
  }
  auto source = model::resolve_model_spec(spec);
  if (!source.is_ok()) {
    std::fprintf(stderr, "%s\n", source.status().to_string().c_str());
    return 1;
  }
  auto config = model::load_source_config(*source);
  auto weights = model::load_source_weights(*source, *config, DType::kBF16, 1);
  if (!weights.is_ok()) {
    std::fprintf(stderr, "%s\n", weights.status().to_string().c_str());
    return 1;
  }
  auto backend = kernels::make_cpu_backend(threads);
  engine::ModelOptions opts;
  opts.block_size = 16;
  opts.max_num_tokens = 512;
  opts.max_num_seqs = 32;
  opts.num_blocks = 32 * (640 / 16);
  opts.max_model_len = 4096;
  auto m = engine::LlamaModel::create(*backend, *config, *weights, opts);
  if (!m.is_ok()) {
    std::fprintf(stderr, "%s\n", m.status().to_string().c_str());
    return 1;
  }
  engine::LlamaModel& model = **m;
  // A decode step reads every weight once, except the embedding table, of
  // which it reads one row per token (unless it doubles as the LM head).
  double weight_bytes = static_cast<double>(weights->total_bytes());
  if (!config->tie_word_embeddings) {
    if (const auto* e = weights->find("model.embed_tokens.weight")) {
      weight_bytes -= static_cast<double>(e->bytes);
    }
  }
  const double kv_per_token = static_cast<double>(model.kv_bytes_per_token());
  const double read_bw = measure_read_bandwidth(threads);
  std::printf(
      "model %s: %.1f M parameters, %.1f MB of weights read per decode step (bf16), %d threads\n",
      spec.c_str(), static_cast<double>(model::count_parameters(*config)) / 1e6, weight_bytes / 1e6,
      threads);
  std::printf("measured read bandwidth: %.1f GB/s\n\n", read_bw / 1e9);

  // Each sequence owns 40 consecutive blocks (640 tokens).
  std::vector<std::vector<int32_t>> tables(32);
  for (int s = 0; s < 32; ++s) {
    for (int b = 0; b < 40; ++b) tables[static_cast<size_t>(s)].push_back(s * 40 + b);
  }
  auto fill = [&](engine::ForwardBatch& batch, int seq, int start, int count) {
    auto q_start = static_cast<int32_t>(batch.tokens.size());
    for (int i = 0; i < count; ++i) {
      int p = start + i;
      batch.tokens.push_back((p * 31 + seq * 7) % static_cast<int>(config->vocab_size));
      batch.positions.push_back(p);
      batch.slots.push_back(tables[static_cast<size_t>(seq)][static_cast<size_t>(p / 16)] * 16 +
                            p % 16);
    }
    batch.seqs.push_back(
        {q_start, count, start + count, tables[static_cast<size_t>(seq)].data(), 40});
    batch.logit_rows.push_back(q_start + count - 1);
  };

  std::vector<float> logits;
  std::printf("| case | tokens/s | ms/step | floor ms/step | of floor |\n");
  std::printf("| --- | --- | --- | --- | --- |\n");
  // Prefill: one 512-token prompt, compute-bound; the floor column is the
  // weight-read floor only, for scale.
  {
    engine::ForwardBatch b;
    fill(b, 0, 0, 512);
    (void)model.forward(b, logits);  // warm-up
    auto t0 = Clock::now();
    const int reps = 3;
    for (int r = 0; r < reps; ++r) (void)model.forward(b, logits);
    double secs = seconds_since(t0) / reps;
    double flops = 2.0 * static_cast<double>(model::count_parameters(*config)) * 512;
    std::printf("| prefill 512 tokens, batch 1 | %.0f | %.1f | (%.1f GFLOP/s) | — |\n", 512 / secs,
                secs * 1e3, flops / secs / 1e9);
  }
  for (int batch_size : {1, 32}) {
    const int context = 128;
    // Prompts of 128 tokens for each sequence.
    for (int s = 0; s < batch_size; ++s) {
      engine::ForwardBatch b;
      fill(b, s, 0, context);
      (void)model.forward(b, logits);
    }
    engine::ForwardBatch b;
    for (int s = 0; s < batch_size; ++s) fill(b, s, context, 1);
    (void)model.forward(b, logits);  // warm-up at context + 1
    auto t0 = Clock::now();
    for (int step = 0; step < steps; ++step) {
      b.clear();
      for (int s = 0; s < batch_size; ++s) fill(b, s, context + 1 + step, 1);
      (void)model.forward(b, logits);
    }
    double per_step = seconds_since(t0) / steps;
    double avg_ctx = context + 1 + steps / 2.0;
    double bytes = weight_bytes + kv_per_token * avg_ctx * batch_size;
    double floor = bytes / read_bw;
    std::printf("| decode, batch %d, context ~%d | %.0f | %.2f | %.2f | %.0f%% |\n", batch_size,
                static_cast<int>(avg_ctx), batch_size / per_step, per_step * 1e3, floor * 1e3,
                100.0 * floor / per_step);
  }
  return 0;
}
