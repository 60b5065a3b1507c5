#pragma once

// The subcommands of the `baton` binary. Each register_* function adds one
// subcommand to the CLI11 app and binds its options; the returned callback
// runs it and yields the process exit code.

#include <CLI/CLI.hpp>
#include <functional>

namespace baton::cli {

using Run = std::function<int()>;

Run register_version(CLI::App& app);
Run register_serve(CLI::App& app);
Run register_gateway(CLI::App& app);
Run register_up(CLI::App& app);
Run register_controller(CLI::App& app);
Run register_bench(CLI::App& app);
Run register_sim(CLI::App& app);

// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the command ran and failed
inline constexpr int kExitUsage = 2;    // bad command line

// Runs the CLI over argv; returns the exit code. Never throws.
int run_cli(int argc, char** argv);

}  // namespace baton::cli
