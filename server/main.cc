// alignserve: command-line entry point.
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  std::printf("alignserve: commands will land here\n");
  return 0;
}
