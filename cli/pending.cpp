// Subcommands whose components have not landed yet. Each parses its eventual
// core options (so scripts can be written against them) and then says plainly
// what is missing, with exit code 1.

#include <iostream>
#include <string>

#include "cli/commands.h"

namespace baton::cli {

namespace {
int missing(const std::string& cmd, const std::string& what) {
  std::cerr << "baton " << cmd << ": " << what
            << " is not part of this build yet (see README.md, 'What works today').\n";
  return kExitFailure;
}
}  // namespace

Run register_sim(CLI::App& app) {
  auto* cmd = app.add_subcommand("sim", "Discrete-event simulation of a cluster");
  auto config = std::make_shared<std::string>();
  cmd->add_option("--config", *config, "Simulation YAML file");
  return [] { return missing("sim", "the cluster simulator"); };
}

}  // namespace baton::cli
