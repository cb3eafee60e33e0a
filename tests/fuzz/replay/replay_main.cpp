// Corpus replay: runs a fuzz target's LLVMFuzzerTestOneInput on every file of a corpus directory,
// so the checked-in corpus is a regression test under g++ (and ASan+UBSan in the asan-ubsan
// preset) without libFuzzer. A crash in the target ends the process, and ctest reports it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace fs = std::filesystem;

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
        return 2;
    }
    std::error_code error;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(argv[1], error)) {
        if (entry.is_regular_file())
            files.push_back(entry.path());
    }
    if (error) {
        std::fprintf(stderr, "%s: %s\n", argv[1], error.message().c_str());
        return 1;
    }
    // A corpus that went missing must not pass as "0 passed".
    if (files.empty()) {
        std::fprintf(stderr, "%s: no corpus files\n", argv[1]);
        return 1;
    }
    std::sort(files.begin(), files.end());

    size_t passed = 0, failed = 0;
    for (const auto& path : files) {
        std::ifstream file(path, std::ios::binary);
        std::vector<char> bytes(
            (std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
        if (!file.good() && !file.eof()) {
            std::fprintf(stderr, "FAILED %s: cannot read\n", path.c_str());
            ++failed;
            continue;
        }
        // Copied into an exactly sized buffer so that ASan sees reads past the input's end.
        std::vector<uint8_t> input(bytes.begin(), bytes.end());
        if (LLVMFuzzerTestOneInput(input.data(), input.size()) != 0) {
            std::fprintf(stderr, "FAILED %s: the target returned non-zero\n", path.c_str());
            ++failed;
            continue;
        }
        ++passed;
    }
    std::printf("%s: %zu passed, %zu failed\n", argv[1], passed, failed);
    return failed == 0 ? 0 : 1;
}
