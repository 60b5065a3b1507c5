// GPU engine figures against the limits measured in the same run, on GPU 0.
//
//   engine_gpu_bench [--model dummy:llama-3.1-8b] [--decode-steps 64]
//                    [--context 1024] [--prefill 8192] [--batch 256]
//                    [--batch-context 1024] [--batch-steps 16]
//                    [--offline-requests 0] [--input 1000] [--output 1000]
//                    [--max-num-seqs 256] [--max-num-batched-tokens 8192]
//                    [--gpu-memory-utilization 0.9] [--offline-seconds 0]
//                    [--temperature 0] [--top-p 1] [--skip-model 0]
//
// - Decode, batch 1: ms per token against its floor, the bytes a step must
//   read (every weight except the embedding table, plus the KV of the whole
//   context) over the device-to-device copy bandwidth measured here.
// - Decode, batch --batch (model forward and greedy sampling on the GPU):
//   tokens/s against the floor of weights plus every sequence's KV.
// - Prefill of one --prefill-token prompt: model FLOPs (2 per weight per
//   token plus causal attention) over time, against the rate of a bf16
//   8192x8192x8192 cuBLAS product through the backend, measured here.
// - Offline throughput (when --offline-requests > 0): that many requests of
//   --input random tokens and --output generated tokens (ignore_eos; greedy
//   unless --temperature) through the Engine with device cuda, all submitted
//   at once, sampled on the GPU; stopped after --offline-seconds when set.
//   Prints the overall rate and the rate over the middle half of the run.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/llama_model.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device.h"
#include "model/dummy_model.h"

namespace {

using namespace baton;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// bf16 matmul rate of the backend's linear (cuBLAS) on random data, in
// FLOP/s: the median of 10 products after 3 warm-ups.
double measure_matmul_rate(kernels::Backend& be, int64_t n) {
  std::vector<uint16_t> host(static_cast<size_t>(n * n));
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> d(-1, 1);
  for (auto& h : host) h = f32_to_bf16(d(rng));
  auto a = be.allocate(host.size() * 2), b = be.allocate(host.size() * 2),
       c = be.allocate(host.size() * 2);
  if (!a.is_ok() || !b.is_ok() || !c.is_ok()) return 0;
  (void)be.upload(host.data(), host.size() * 2, a->data());
  (void)be.upload(host.data(), host.size() * 2, b->data());
  kernels::Tensor x = a->tensor(DType::kBF16, {n, n}), w = b->tensor(DType::kBF16, {n, n});
  kernels::Tensor o = c->tensor(DType::kBF16, {n, n});
  std::vector<double> times;
  for (int r = 0; r < 13; ++r) {
    (void)be.synchronize();
    auto t0 = Clock::now();
    be.linear(x, w, nullptr, o);
    (void)be.synchronize();
    if (r >= 3) times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  return 2.0 * static_cast<double>(n) * n * n / times[times.size() / 2];
}

// Batch-1 products of the model's shapes through the backend: achieved
// weight-read bandwidth of each, from 64 products enqueued back to back over
// enough weight copies that none is found in L2 (launch gaps included, as in
// a decode step), after a warm-up.
void report_decode_linears(kernels::Backend& be, const model::ModelConfig& c, double copy_bw) {
  struct Shape {
    const char* name;
    int64_t m, k;
    DType out;
  };
  const int64_t h = c.hidden_size;
  const Shape shapes[] = {{"qkv (fused)", c.q_size() + 2 * c.kv_size(), h, DType::kBF16},
                          {"o", h, c.q_size(), DType::kBF16},
                          {"gate_up", 2 * c.intermediate_size, h, DType::kBF16},
                          {"down", h, c.intermediate_size, DType::kBF16},
                          {"lm_head", c.vocab_size, h, DType::kF32}};
  std::printf(
      "| batch-1 product | m x k | us | GB/s | of copy bandwidth |\n| --- | --- | --- | --- | --- "
      "|\n");
  for (const Shape& s : shapes) {
    const size_t wbytes = static_cast<size_t>(s.m * s.k) * 2;
    const int copies = static_cast<int>(std::max<size_t>(2, (size_t{256} << 20) / wbytes + 1));
    std::vector<kernels::DeviceBuffer> ws;
    std::vector<uint16_t> host(static_cast<size_t>(s.m * s.k));
    for (size_t i = 0; i < host.size(); ++i) {
      host[i] = f32_to_bf16(static_cast<float>((i * 2654435761u) % 1000) / 1e4f - 0.05f);
    }
    for (int i = 0; i < copies; ++i) {
      auto b = be.allocate(wbytes);
      if (!b.is_ok()) return;
      (void)be.upload(host.data(), wbytes, b->data());
      ws.push_back(std::move(b).value());
    }
    auto xb = be.allocate(static_cast<size_t>(s.k) * 2);
    auto ob = be.allocate(static_cast<size_t>(s.m) * 4);
    if (!xb.is_ok() || !ob.is_ok()) return;
    (void)be.upload(host.data(), static_cast<size_t>(s.k) * 2, xb->data());
    kernels::Tensor x = xb->tensor(DType::kBF16, {1, s.k});
    kernels::Tensor o = ob->tensor(s.out, {1, s.m});
    constexpr int kReps = 64;
    double t = 0;
    for (int pass = 0; pass < 2; ++pass) {  // the first pass warms up
      (void)be.synchronize();
      auto t0 = Clock::now();
      for (int r = 0; r < kReps; ++r) {
        be.linear(x, ws[static_cast<size_t>(r % copies)].tensor(DType::kBF16, {s.m, s.k}), nullptr,
                  o);
      }
      (void)be.synchronize();
      t = seconds_since(t0) / kReps;
    }
    std::printf("| %s | %lld x %lld | %.1f | %.0f | %.0f%% |\n", s.name,
                static_cast<long long>(s.m), static_cast<long long>(s.k), t * 1e6,
                static_cast<double>(wbytes) / t / 1e9,
                100.0 * static_cast<double>(wbytes) / t / copy_bw);
  }
  std::printf("\n");
}

// Random bf16 values in [-1, 1) from a cheap counter hash (gigabytes of them).
void fill_bf16(std::vector<uint16_t>& v, uint32_t seed) {
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t x = static_cast<uint32_t>(i) * 2654435761u + seed;
    x ^= x >> 15;
    x *= 2246822519u;
    x ^= x >> 13;
    v[i] = f32_to_bf16(static_cast<float>(x >> 8) / 8388608.0f - 1.0f);
  }
}

// One layer's attention alone, with the model's head shapes: decode of
// `batch` sequences over `context` cached tokens (KV bytes read per second)
// and the causal prefill of one `prefill`-token prompt (FLOP/s).
void report_attention(kernels::Backend& be, const model::ModelConfig& c, double copy_bw, int batch,
                      int context, int prefill) {
  const int32_t bs = 16, hk = static_cast<int32_t>(c.num_key_value_heads);
  const int32_t hd = static_cast<int32_t>(c.head_dim),
                hq = static_cast<int32_t>(c.num_attention_heads);
  const int32_t per_seq = (std::max(context, prefill) + bs - 1) / bs;
  const int32_t blocks = std::max(batch * ((context + bs - 1) / bs), per_seq);
  const size_t side = static_cast<size_t>(blocks) * bs * hk * hd;
  std::vector<uint16_t> host(side);
  auto kb = be.allocate(side * 2), vb = be.allocate(side * 2);
  if (!kb.is_ok() || !vb.is_ok()) return;
  fill_bf16(host, 1);
  (void)be.upload(host.data(), side * 2, kb->data());
  fill_bf16(host, 2);
  (void)be.upload(host.data(), side * 2, vb->data());
  kernels::KvCacheView cache{kb->tensor(DType::kBF16, {blocks, bs, hk, hd}),
                             vb->tensor(DType::kBF16, {blocks, bs, hk, hd}), bs, hk, hd};
  const int64_t rows = std::max(batch, prefill);
  std::vector<uint16_t> qh(static_cast<size_t>(rows) * hq * hd);
  fill_bf16(qh, 3);
  auto qb = be.allocate(qh.size() * 2), ob = be.allocate(qh.size() * 2);
  if (!qb.is_ok() || !ob.is_ok()) return;
  (void)be.upload(qh.data(), qh.size() * 2, qb->data());
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  auto time_calls = [&](const std::vector<kernels::AttentionSeq>& seqs, int64_t n) {
    kernels::Tensor q = qb->tensor(DType::kBF16, {n, int64_t{hq} * hd});
    kernels::Tensor o = ob->tensor(DType::kBF16, {n, int64_t{hq} * hd});
    be.attention(q, cache, seqs, hq, scale, o);  // warm-up
    (void)be.synchronize();
    constexpr int kReps = 20;
    auto t0 = Clock::now();
    for (int r = 0; r < kReps; ++r) be.attention(q, cache, seqs, hq, scale, o);
    (void)be.synchronize();
    return seconds_since(t0) / kReps;
  };
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(batch));
  std::vector<kernels::AttentionSeq> seqs;
  const int32_t nb = (context + bs - 1) / bs;
  for (int s = 0; s < batch; ++s) {
    for (int32_t b = 0; b < nb; ++b) tables[static_cast<size_t>(s)].push_back(s * nb + b);
    seqs.push_back({s, 1, context, tables[static_cast<size_t>(s)].data(), nb});
  }
  const double t_dec = time_calls(seqs, batch);
  const double kv_bytes = static_cast<double>(batch) * context * 2.0 * hk * hd * 2;
  std::vector<int32_t> ptable(static_cast<size_t>(per_seq));
  for (int32_t b = 0; b < per_seq; ++b) ptable[static_cast<size_t>(b)] = b;
  const double t_pre = time_calls({{0, prefill, prefill, ptable.data(), per_seq}}, prefill);
  const double flops = 4.0 * hq * hd * static_cast<double>(prefill) * prefill / 2;
  std::printf("| attention, one layer | time | rate |\n| --- | --- | --- |\n");
  std::printf(
      "| decode, %d sequences x %d tokens | %.1f us | %.0f GB/s of KV (%.0f%% of copy bandwidth) "
      "|\n",
      batch, context, t_dec * 1e6, kv_bytes / t_dec / 1e9, 100.0 * kv_bytes / t_dec / copy_bw);
  std::printf("| prefill, %d tokens, causal | %.2f ms | %.0f TFLOP/s |\n\n", prefill, t_pre * 1e3,
              flops / t_pre / 1e12);
}

struct Args {
  std::string spec = "dummy:llama-3.1-8b";
  int decode_steps = 64;
  int context = 1024;
  int prefill = 8192;
  int offline_requests = 0;
  int input = 1000;
  int output = 1000;
  int max_num_seqs = 256;
  int max_num_batched_tokens = 8192;
  double gpu_memory_utilization = 0.9;
  double offline_seconds = 0;  // 0: until every request is done
  float temperature = 0.0f;
  float top_p = 1.0f;
  int batch = 256;     // the batched decode case; 0 skips it
  int skip_model = 0;  // 1: only the offline run
  int batch_context = 1024;
  int batch_steps = 16;
};

int run_offline(const Args& a, const model::ModelConfig& config) {
  engine::EngineConfig ec;
  ec.model = a.spec;
  ec.device = "cuda";
  ec.max_num_seqs = a.max_num_seqs;
  ec.max_num_batched_tokens = a.max_num_batched_tokens;
  ec.gpu_memory_utilization = a.gpu_memory_utilization;
  ec.enable_prefix_caching = false;  // random prompts share nothing
  auto t_load = Clock::now();
  auto eng = engine::Engine::create(ec);
  if (!eng.is_ok()) {
    std::fprintf(stderr, "engine: %s\n", eng.status().to_string().c_str());
    return 1;
  }
  engine::Engine& e = **eng;
  std::printf(
      "\nengine loaded in %.1f s: %d KV blocks of 16 tokens (%.0f sequences of %d tokens)\n",
      seconds_since(t_load), e.stats().num_blocks,
      e.stats().num_blocks * 16.0 / (a.input + a.output), a.input + a.output);
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(config.vocab_size) - 1);
  std::vector<std::shared_ptr<engine::RequestStream>> streams;
  for (int i = 0; i < a.offline_requests; ++i) {
    engine::EngineRequest r;
    r.prompt.resize(static_cast<size_t>(a.input));
    for (auto& t : r.prompt) t = tok(rng);
    r.params.temperature = a.temperature;
    r.params.top_p = a.top_p;
    r.params.seed = static_cast<uint64_t>(i);
    r.params.max_tokens = a.output;
    r.params.ignore_eos = true;
    auto st = e.submit(std::move(r));
    if (!st.is_ok()) {
      std::fprintf(stderr, "submit: %s\n", st.status().to_string().c_str());
      return 1;
    }
    streams.push_back(*st);
  }
  // The engine thread runs the steps; this one samples the counters once a
  // second, so that a run cut short by --offline-seconds still reports its
  // rate, and the rate once the batch is full is seen apart from the start.
  auto t0 = Clock::now();
  if (Status st = e.start(); !st.is_ok()) return 1;
  struct Sample {
    double t;
    int64_t out, prompt, steps;
  };
  std::vector<Sample> samples{{0.0, 0, 0, 0}};
  const int64_t want = static_cast<int64_t>(a.offline_requests) * a.output;
  bool cut = false;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const engine::EngineStats s = e.stats();
    const double t = seconds_since(t0);
    samples.push_back({t, s.generation_tokens, s.prompt_tokens, s.steps});
    std::printf("  t %5.0f s: %lld output tokens, %d running, %d waiting, kv %.0f%%\n", t,
                static_cast<long long>(s.generation_tokens), s.num_running, s.num_waiting,
                100 * s.kv_usage);
    if (s.generation_tokens >= want && s.num_running == 0 && s.num_waiting == 0) break;
    if (a.offline_seconds > 0 && t >= a.offline_seconds) {
      cut = true;
      break;
    }
  }
  e.stop();
  const Sample& last = samples.back();
  const engine::EngineStats s = e.stats();
  std::printf(
      "offline: %d requests x (%d in, %d out), max_num_seqs %d%s: %.1f s, %lld output tokens, "
      "%.0f output tokens/s, %.0f total tokens/s, %lld steps, %lld preemptions\n",
      a.offline_requests, a.input, a.output, a.max_num_seqs, cut ? " (cut short)" : "", last.t,
      static_cast<long long>(last.out), static_cast<double>(last.out) / last.t,
      static_cast<double>(last.out + last.prompt) / last.t, static_cast<long long>(last.steps),
      static_cast<long long>(s.num_preemptions));
  // Steady state: the middle half of the run by time.
  const Sample* lo = &samples.front();
  const Sample* hi = &samples.back();
  for (const Sample& x : samples) {
    if (x.t <= last.t * 0.25) lo = &x;
    if (x.t <= last.t * 0.75) hi = &x;
  }
  if (hi->t > lo->t) {
    std::printf(
        "steady state (%.0f s to %.0f s): %.0f output tokens/s, %.0f prompt tokens/s, %.1f ms per "
        "step\n",
        lo->t, hi->t, static_cast<double>(hi->out - lo->out) / (hi->t - lo->t),
        static_cast<double>(hi->prompt - lo->prompt) / (hi->t - lo->t),
        1e3 * (hi->t - lo->t) / static_cast<double>(std::max<int64_t>(1, hi->steps - lo->steps)));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--model") a.spec = v;
    if (k == "--decode-steps") a.decode_steps = std::stoi(v);
    if (k == "--context") a.context = std::stoi(v);
    if (k == "--prefill") a.prefill = std::stoi(v);
    if (k == "--offline-requests") a.offline_requests = std::stoi(v);
    if (k == "--input") a.input = std::stoi(v);
    if (k == "--output") a.output = std::stoi(v);
    if (k == "--max-num-seqs") a.max_num_seqs = std::stoi(v);
    if (k == "--max-num-batched-tokens") a.max_num_batched_tokens = std::stoi(v);
    if (k == "--gpu-memory-utilization") a.gpu_memory_utilization = std::stod(v);
    if (k == "--offline-seconds") a.offline_seconds = std::stod(v);
    if (k == "--temperature") a.temperature = std::stof(v);
    if (k == "--top-p") a.top_p = std::stof(v);
    if (k == "--batch") a.batch = std::stoi(v);
    if (k == "--skip-model") a.skip_model = std::stoi(v);
    if (k == "--batch-context") a.batch_context = std::stoi(v);
    if (k == "--batch-steps") a.batch_steps = std::stoi(v);
  }
  auto gpus = kernels::cuda::list_gpus();
  if (!gpus.is_ok()) {
    std::fprintf(stderr, "no GPU: %s\n", gpus.status().to_string().c_str());
    return 1;
  }
  const auto& g = gpus->front();
  auto bw = kernels::cuda::measure_copy_bandwidth(0, uint64_t{1} << 30, 20);
  if (!bw.is_ok()) return 1;
  std::printf("GPU 0: %s, %d SMs, %.1f GiB; copy bandwidth %.0f GB/s (read + write)\n",
              g.name.c_str(), g.multiprocessors, static_cast<double>(g.total_memory) / (1 << 30),
              *bw / 1e9);

  auto source = model::resolve_model_spec(a.spec);
  if (!source.is_ok()) return 1;
  auto config = model::load_source_config(*source);
  if (!config.is_ok()) return 1;

  if (a.skip_model == 0) {
    auto backend = kernels::cuda::make_cuda_backend({});
    if (!backend.is_ok()) {
      std::fprintf(stderr, "%s\n", backend.status().to_string().c_str());
      return 1;
    }
    kernels::Backend& be = **backend;
    const double mm = measure_matmul_rate(be, 8192);
    std::printf("bf16 matmul 8192^3 through cuBLAS: %.0f TFLOP/s\n\n", mm / 1e12);
    report_decode_linears(be, *config, *bw);
    report_attention(be, *config, *bw, std::max(1, a.batch), a.batch_context + 9, a.prefill);

    auto t_w = Clock::now();
    auto weights = model::load_source_weights(*source, *config, DType::kBF16, 1);
    if (!weights.is_ok()) return 1;
    engine::ModelOptions opts;
    opts.block_size = 16;
    opts.max_num_tokens = std::max(a.prefill, a.context);
    opts.max_num_seqs = std::max(8, a.batch);
    opts.kv_dtype = DType::kBF16;
    opts.max_model_len = std::max(a.prefill, a.context + a.decode_steps + 16);
    // Sequence 0: batch-1 decode; 1: prefill; 2 ...: the batched decode.
    const int32_t blocks_per_seq = (opts.max_model_len + 15) / 16;
    const int32_t blocks_per_batch_seq = (a.batch_context + a.batch_steps + 16 + 15) / 16;
    opts.num_blocks = 2 * blocks_per_seq + a.batch * blocks_per_batch_seq;
    auto m = engine::LlamaModel::create(be, *config, *weights, opts);
    if (!m.is_ok()) {
      std::fprintf(stderr, "%s\n", m.status().to_string().c_str());
      return 1;
    }
    engine::LlamaModel& model = **m;
    double weight_bytes = static_cast<double>(weights->total_bytes());
    if (!config->tie_word_embeddings) {
      if (const auto* e = weights->find("model.embed_tokens.weight")) {
        weight_bytes -= static_cast<double>(e->bytes);
      }
    }
    const double params = static_cast<double>(model::count_parameters(*config));
    std::printf("model %s: %.2f B parameters, %.2f GB read per decode step; loaded in %.1f s\n\n",
                a.spec.c_str(), params / 1e9, weight_bytes / 1e9, seconds_since(t_w));

    std::vector<std::vector<int32_t>> tables;
    int32_t next_block = 0;
    for (int i = 0; i < 2 + a.batch; ++i) {
      const int32_t nb = i < 2 ? blocks_per_seq : blocks_per_batch_seq;
      tables.emplace_back(static_cast<size_t>(nb));
      for (auto& id : tables.back()) id = next_block++;
    }
    const auto vocab = static_cast<int32_t>(config->vocab_size);
    // Appends tokens [start, start + count) of sequence `seq` to the batch.
    auto add = [&](engine::ForwardBatch& batch, int seq, int start, int count) {
      const auto& table = tables[static_cast<size_t>(seq)];
      const auto q_start = static_cast<int32_t>(batch.tokens.size());
      for (int i = 0; i < count; ++i) {
        const int p = start + i;
        batch.tokens.push_back((p * 7919 + seq * 131 + 13) % vocab);
        batch.positions.push_back(p);
        batch.slots.push_back(table[static_cast<size_t>(p / 16)] * 16 + p % 16);
      }
      batch.seqs.push_back(
          {q_start, count, start + count, table.data(), static_cast<int32_t>(table.size())});
      batch.logit_rows.push_back(q_start + count - 1);
    };
    auto fill = [&](engine::ForwardBatch& batch, int seq, int start, int count) {
      batch.clear();
      add(batch, seq, start, count);
    };
    std::vector<float> logits;
    engine::ForwardBatch b;
    // Decode steps sample greedily on the GPU, as the engine does: a token id
    // per row comes back, not the row's logits.
    std::vector<kernels::SampleRow> rows_buf;
    std::vector<kernels::SampleOutput> sampled;
    auto greedy_rows = [&](int n) {
      rows_buf.assign(static_cast<size_t>(n), kernels::SampleRow{});
      for (int i = 0; i < n; ++i) {
        rows_buf[static_cast<size_t>(i)].logits_row = i;
        rows_buf[static_cast<size_t>(i)].temperature = 0.0f;
      }
      return std::span<const kernels::SampleRow>(rows_buf);
    };

    std::printf("| case | time | floor | of floor |\n| --- | --- | --- | --- |\n");
    // Prefill: warm-up once, then the median of 3.
    {
      const double T = a.prefill;
      const double attn = 4.0 * config->num_hidden_layers * config->q_size() * T * T / 2;
      const double flops =
          2.0 * (params - static_cast<double>(config->vocab_size) * config->hidden_size) * T + attn;
      std::vector<double> times;
      for (int r = 0; r < 4; ++r) {
        fill(b, 1, 0, a.prefill);
        auto t0 = Clock::now();
        Status st = model.forward(b, logits);
        if (!st.is_ok()) {
          std::fprintf(stderr, "prefill: %s\n", st.to_string().c_str());
          return 1;
        }
        if (r > 0) times.push_back(seconds_since(t0));
      }
      std::sort(times.begin(), times.end());
      const double t = times[1];
      std::printf(
          "| prefill %d tokens | %.1f ms (%.0f TFLOP/s) | %.1f ms at the matmul rate | %.0f%% |\n",
          a.prefill, t * 1e3, flops / t / 1e12, flops / mm * 1e3, 100.0 * flops / mm / t);
    }
    // Decode, batch 1, after a --context-token prompt.
    {
      fill(b, 0, 0, a.context);
      if (!model.forward(b, logits).is_ok()) return 1;
      for (int w = 0; w < 3; ++w) {  // warm-up
        fill(b, 0, a.context + w, 1);
        (void)model.forward(b, logits);
      }
      const int first = a.context + 3;
      std::vector<double> times;
      for (int s = 0; s < a.decode_steps; ++s) {
        fill(b, 0, first + s, 1);
        auto t0 = Clock::now();
        if (!model.forward_sample(b, greedy_rows(1), sampled).is_ok()) return 1;
        times.push_back(seconds_since(t0));
      }
      std::sort(times.begin(), times.end());
      const double t = times[times.size() / 2];
      const double ctx = first + a.decode_steps / 2.0;
      const double bytes = weight_bytes + static_cast<double>(model.kv_bytes_per_token()) * ctx;
      const double floor = bytes / *bw;
      std::printf(
          "| decode batch 1, context ~%.0f | %.2f ms/token (%.0f tokens/s) | %.2f ms | %.0f%% |\n",
          ctx, t * 1e3, 1 / t, floor * 1e3, 100.0 * floor / t);
    }
    // Decode, batch --batch, each sequence after a --batch-context prompt
    // (prefilled --prefill tokens per call).
    if (a.batch > 0) {
      const int per_call = std::max(1, a.prefill / a.batch_context);
      for (int s0 = 0; s0 < a.batch; s0 += per_call) {
        b.clear();
        for (int s = s0; s < std::min(a.batch, s0 + per_call); ++s)
          add(b, 2 + s, 0, a.batch_context);
        if (!model.forward(b, logits).is_ok()) return 1;
      }
      bool nucleus = false;  // the rows draw with top-k 50, top-p 0.9 instead
      auto step = [&](int pos) {
        b.clear();
        for (int s = 0; s < a.batch; ++s) add(b, 2 + s, pos, 1);
        std::span<const kernels::SampleRow> rows = greedy_rows(a.batch);
        if (nucleus) {
          for (int s = 0; s < a.batch; ++s) {
            kernels::SampleRow& r = rows_buf[static_cast<size_t>(s)];
            r.temperature = 0.8f;
            r.top_k = 50;
            r.top_p = 0.9f;
            r.uniform = (s * 0.618034 + pos * 0.1) - std::floor(s * 0.618034 + pos * 0.1);
          }
        }
        return model.forward_sample(b, rows, sampled).is_ok();
      };
      if (!step(a.batch_context)) return 1;  // warm-up
      std::vector<double> times;
      for (int i = 1; i <= a.batch_steps; ++i) {
        auto t0 = Clock::now();
        if (!step(a.batch_context + i)) return 1;
        times.push_back(seconds_since(t0));
      }
      std::sort(times.begin(), times.end());
      const double t = times[times.size() / 2];
      const double ctx = a.batch_context + 1 + a.batch_steps / 2.0;
      const double bytes =
          weight_bytes + static_cast<double>(model.kv_bytes_per_token()) * ctx * a.batch;
      const double floor = bytes / *bw;
      std::printf(
          "| decode batch %d, context ~%.0f | %.2f ms/step (%.0f tokens/s) | %.2f ms | %.0f%% |\n",
          a.batch, ctx, t * 1e3, a.batch / t, floor * 1e3, 100.0 * floor / t);
      // The same steps again (their KV rewritten with the same values), each
      // row drawn with top-k and top-p on the GPU rather than greedily.
      nucleus = true;
      times.clear();
      for (int i = 1; i <= a.batch_steps; ++i) {
        auto t0 = Clock::now();
        if (!step(a.batch_context + i)) return 1;
        times.push_back(seconds_since(t0));
      }
      std::sort(times.begin(), times.end());
      const double tn = times[times.size() / 2];
      std::printf(
          "| decode batch %d, top-k 50 / top-p 0.9 sampling | %.2f ms/step (%.0f tokens/s) | %.2f "
          "ms | %.0f%% |\n",
          a.batch, tn * 1e3, a.batch / tn, floor * 1e3, 100.0 * floor / tn);
    }
  }
  if (a.offline_requests > 0) return run_offline(a, *config);
  return 0;
}
