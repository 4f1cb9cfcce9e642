// The subcommands of the alignserve binary. Each parses its own flags
// (`alignserve COMMAND --help`) and returns the process exit code.
#ifndef ALIGNSERVE_SERVER_COMMANDS_H_
#define ALIGNSERVE_SERVER_COMMANDS_H_

namespace alignserve {

// Streams one completion of a prompt to stdout; speed figures to stderr.
int RunGenerate(int argc, char** argv);
// Offline throughput / latency benchmark of the AsyncEngine.
int RunBenchOffline(int argc, char** argv);
// The OpenAI-compatible HTTP server.
int RunServe(int argc, char** argv);

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_COMMANDS_H_
