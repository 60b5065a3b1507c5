#include "cli/bench_profile.h"

#include <fmt/format.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "bench/serving/profile_fit.h"
#include "bench/serving/profile_probe.h"

namespace baton::cli {

namespace {

struct ProfileFlags {
  bench::ProbeOptions probe;
  std::string decode_url;
  std::string out;
  std::string name;
  std::string note;
  double timeout_s = 120;
  int64_t kv_capacity_tokens = 0;
};

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

int run_profile(ProfileFlags& f) {
  bench::ProbeOptions o = f.probe;
  if (!f.decode_url.empty()) o.metrics_url = f.decode_url;
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(f.timeout_s * 1000));
  std::cout << "baton bench profile: probing " << o.base_url
            << (o.prefill_url.empty() ? "" : " (P/D, prefill " + o.prefill_url + ")")
            << (o.quick ? ", quick probe set" : "") << "\n"
            << std::flush;
  auto p = bench::measure_profile(o, std::cout);
  if (!p.is_ok()) {
    std::cerr << "baton bench profile: " << p.status().message() << "\n";
    return p.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  if (f.kv_capacity_tokens > 0) p->kv_capacity_tokens = f.kv_capacity_tokens;
  p->name = f.name.empty() ? "measured" : f.name;
  p->description = fmt::format(
      "Measured by `baton bench profile` on {} against {}{}{}.\n"
      "Fitted by least squares from TTFT and inter-token latencies of probe requests\n"
      "(bench/serving/profile_probe.h); step_tokens, max_batch and block_tokens are\n"
      "what the server was started with, not measurements.",
      utc_now(), o.base_url, o.prefill_url.empty() ? "" : " (prefill " + o.prefill_url + ")",
      o.quick ? ", quick probe set" : "");
  if (!f.note.empty()) p->description += "\n" + f.note;
  const std::string yaml = bench::profile_yaml(*p);
  std::ofstream out(f.out);
  out << yaml;
  out.close();
  if (!out) {
    std::cerr << "baton bench profile: cannot write " << f.out << "\n";
    return kExitFailure;
  }
  std::cout << yaml << "wrote " << f.out << "\n";
  return kExitOk;
}

}  // namespace

BenchProfileCommand register_bench_profile(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "profile", "Measure a `baton sim` profile (cost models) against running instances");
  auto f = std::make_shared<ProfileFlags>();
  cmd->add_option("--base-url,--url", f->probe.base_url,
                  "Instance, or gateway in front of a P/D pair, that the probes go to")
      ->capture_default_str();
  cmd->add_option("--model", f->probe.model, "Model name (default: the first of /v1/models)");
  cmd->add_option("--metrics-url", f->probe.metrics_url,
                  "Instance whose /metrics has kv_cache_usage_perc (default: --url)");
  cmd->add_option("--prefill-url", f->probe.prefill_url,
                  "P/D: the prefill instance behind --url (its KV transfer metrics)");
  cmd->add_option("--decode-url", f->decode_url,
                  "P/D: the decode instance behind --url (its KV room)");
  cmd->add_option("--out", f->out, "Profile file to write (YAML, for baton sim --profile)")
      ->required();
  cmd->add_option("--name", f->name, "The profile's name");
  cmd->add_option("--note", f->note, "A comment line for the file (machine, model, flags)");
  cmd->add_flag("--quick", f->probe.quick, "Fewer, shorter probes (seconds, not minutes)");
  cmd->add_option("--max-num-batched-tokens", f->probe.step_tokens,
                  "The server's token budget per step")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-num-seqs", f->probe.max_batch, "The server's sequences per step")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--block-size", f->probe.block_tokens, "The server's tokens per KV block")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--messages-per-block", f->probe.messages_per_block,
                  "Messages a block-wise KV transfer sends per block (layers x K/V)");
  cmd->add_option("--max-prompt", f->probe.max_prompt,
                  "Longest probe prompt (default: the step budget, within the context)");
  cmd->add_option("--kv-capacity-tokens", f->kv_capacity_tokens,
                  "KV room per instance, instead of the estimate from kv_cache_usage_perc");
  cmd->add_option("--seed", f->probe.seed, "Seed of the probe prompts' words");
  cmd->add_option("--timeout-s", f->timeout_s, "Per-request timeout in seconds")
      ->check(CLI::PositiveNumber);
  return {cmd, [f] { return run_profile(*f); }};
}

}  // namespace baton::cli
