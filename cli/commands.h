#pragma once

// The subcommands of the `baton` binary. Each register_* function adds one
// subcommand to the CLI11 app and binds its options; the returned callback
// runs it and yields the process exit code.

#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <string>

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

// Blocks SIGINT, SIGTERM and `extra` in every thread (call before starting
// any) and returns the set, for sigwait or a signalfd on one thread.
inline sigset_t block_stop_signals(std::initializer_list<int> extra = {}) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  for (int s : extra) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// The cluster token given on the command line, else $BATON_CLUSTER_TOKEN.
inline std::string cluster_token_or_env(const std::string& given) {
  if (!given.empty()) return given;
  const char* env = std::getenv("BATON_CLUSTER_TOKEN");
  return env ? env : "";
}

// Runs the CLI over argv; returns the exit code. Never throws.
int run_cli(int argc, char** argv);

}  // namespace baton::cli
