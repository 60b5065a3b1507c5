#include <iostream>
#include <thread>

#include "cli/commands.h"

#ifndef BATON_VERSION
#define BATON_VERSION "0.0.0"
#endif

namespace baton::cli {

Run register_version(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print the version and what this build contains");
  return [cmd] {
    (void)cmd;
    std::cout << "baton " << BATON_VERSION << "\n";
#ifdef NDEBUG
    std::cout << "build: optimised\n";
#else
    std::cout << "build: debug\n";
#endif
#ifdef BATON_HAVE_CUDA
    std::cout << "cuda backend: compiled in\n";
#else
    std::cout << "cuda backend: not compiled in\n";
#endif
    std::cout << "cpu threads: " << std::thread::hardware_concurrency() << "\n";
    return kExitOk;
  };
}

}  // namespace baton::cli
