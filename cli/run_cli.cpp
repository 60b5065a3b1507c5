#include <iostream>
#include <map>
#include <string>

#include "cli/commands.h"

namespace baton::cli {

int run_cli(int argc, char** argv) {
  CLI::App app{"Baton: fast, disaggregated LLM serving", "baton"};
  app.require_subcommand(1);
  app.fallthrough(false);

  std::map<CLI::App*, Run> runs;
  auto add = [&](Run (*reg)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    Run run = reg(app);
    runs[app.get_subcommands({}).at(before)] = std::move(run);
  };
  add(register_serve);
  add(register_gateway);
  add(register_up);
  add(register_controller);
  add(register_bench);
  add(register_sim);
  add(register_version);

  // CLI11 reports a stray word only as "a subcommand is required"; name it.
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (CLI::App* sub : app.get_subcommands({})) known = known || sub->check_name(argv[1]);
    if (!known) {
      std::cerr << "baton: unknown subcommand '" << argv[1] << "'\nRun with --help for the list.\n";
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  for (CLI::App* sub : app.get_subcommands()) {
    auto it = runs.find(sub);
    if (it != runs.end()) {
      try {
        return it->second();
      } catch (const std::exception& e) {
        std::cerr << "baton " << sub->get_name() << ": " << e.what() << "\n";
        return kExitFailure;
      }
    }
  }
  std::cerr << app.help();
  return kExitUsage;
}

}  // namespace baton::cli
