// Runs the real `baton` binary as a child process and checks what a user sees:
// exit codes, help and error messages.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace {

struct Outcome {
  int exit_code;
  std::string output;  // stdout and stderr together
};

Outcome run_baton(const std::string& args) {
  std::string cmd = std::string(BATON_BINARY_DIR) + "/cli/baton " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(Cli, HelpListsEverySubcommand) {
  Outcome r = run_baton("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* sub : {"serve", "gateway", "up", "controller", "bench", "sim", "version"}) {
    EXPECT_NE(r.output.find(sub), std::string::npos) << sub << " missing from:\n" << r.output;
  }
}

TEST(Cli, EachSubcommandHasHelp) {
  for (const char* sub : {"serve", "gateway", "up", "controller", "bench", "sim", "version"}) {
    Outcome r = run_baton(std::string(sub) + " --help");
    EXPECT_EQ(r.exit_code, 0) << sub;
    EXPECT_NE(r.output.find("Usage"), std::string::npos) << r.output;
  }
}

TEST(Cli, UnknownSubcommandIsAUsageError) {
  Outcome r = run_baton("frobnicate");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("frobnicate"), std::string::npos) << r.output;
}

TEST(Cli, UnknownFlagIsAUsageError) {
  Outcome r = run_baton("version --no-such-flag");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--no-such-flag"), std::string::npos) << r.output;
}

TEST(Cli, NoSubcommandIsAUsageError) {
  Outcome r = run_baton("");
  EXPECT_EQ(r.exit_code, 2);
}

TEST(Cli, OutOfRangeOptionIsAUsageError) {
  Outcome r = run_baton("serve --port 70000");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("port"), std::string::npos) << r.output;
}

TEST(Cli, VersionPrintsTheVersion) {
  Outcome r = run_baton("version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output.rfind("baton ", 0), 0u) << r.output;
}

}  // namespace
