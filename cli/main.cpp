#include "cli/commands.h"

int main(int argc, char** argv) { return baton::cli::run_cli(argc, argv); }
