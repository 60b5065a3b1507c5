#include <iostream>
#include <thread>

#include "cli/commands.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/device.h"
#endif

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
    auto gpus = kernels::cuda::list_gpus();
    if (!gpus.is_ok()) {
      std::cout << "gpus: none usable (" << gpus.status().message() << ")\n";
    } else {
      for (const auto& g : *gpus) {
        std::cout << "gpu " << g.index << ": " << g.name << ", sm_" << g.compute_major
                  << g.compute_minor << ", " << g.multiprocessors << " SMs, "
                  << (g.total_memory >> 20) << " MiB\n";
      }
    }
#else
    std::cout << "cuda backend: not compiled in\n";
#endif
    std::cout << "cpu threads: " << std::thread::hardware_concurrency() << "\n";
    return kExitOk;
  };
}

}  // namespace baton::cli
