// alignserve: command-line entry point; dispatches to a subcommand.
#include <cstdio>
#include <cstring>

#include "server/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: alignserve COMMAND [flags]\n"
    "\n"
    "An LLM inference server for Llama-family models with inference-time\n"
    "alignment policies.\n"
    "\n"
    "commands:\n"
    "  generate       stream one completion of a prompt to stdout\n"
    "  serve          OpenAI-compatible HTTP server (the main job)\n"
    "  bench-offline  offline throughput and latency benchmark of the engine\n"
    "\n"
    "Run 'alignserve COMMAND --help' for a command's flags.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "generate")) return alignserve::RunGenerate(argc, argv);
  if (!std::strcmp(argv[1], "bench-offline")) return alignserve::RunBenchOffline(argc, argv);
  if (!std::strcmp(argv[1], "serve")) return alignserve::RunServe(argc, argv);
  std::fprintf(stderr, "alignserve: unknown command '%s'\n\n%s", argv[1], kUsage);
  return 2;
}
