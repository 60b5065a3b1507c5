#pragma once

// `baton bench profile`: measures a profile for `baton sim` against running
// instances (bench/serving/profile_probe.h) and writes it as YAML. A
// subcommand of `baton bench`; register_bench() adds it.

#include <CLI/CLI.hpp>

#include "cli/commands.h"

namespace baton::cli {

// Adds `profile` under `bench`; the returned callback runs it. Call it only
// when the returned subcommand was parsed.
struct BenchProfileCommand {
  CLI::App* app = nullptr;
  Run run;
};
BenchProfileCommand register_bench_profile(CLI::App& bench);

}  // namespace baton::cli
