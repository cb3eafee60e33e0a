// libFuzzer target for vgpu-vnc's HTTP request head parser and path resolution
// (src/vnc/web_server.cpp): a browser, or anything that reaches the --http port, sends the bytes.
// Contract checked: a parsed head lies within the input, and a resolved file is under the root
// with no ".." or hidden segment in what was appended.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "vnc/web_server.h"

namespace {

#define FUZZ_CHECK(expression)                                                                     \
    do {                                                                                           \
        if (!(expression)) {                                                                       \
            std::fprintf(stderr, "fuzz_http_request: check failed: %s (%s:%d)\n", #expression,     \
                __FILE__, __LINE__);                                                               \
            std::abort();                                                                          \
        }                                                                                          \
    } while (0)

// A root with index.html and one module, made once.
const std::string& root()
{
    static const std::string path = [] {
        char pattern[] = "/tmp/fuzz-http-XXXXXX";
        std::string dir = ::mkdtemp(pattern);
        ::mkdir((dir + "/novnc").c_str(), 0755);
        for (const char* f : { "/index.html", "/novnc/rfb.js" })
            if (FILE* file = std::fopen((dir + f).c_str(), "w"))
                std::fclose(file);
        return dir;
    }();
    return path;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string_view bytes(reinterpret_cast<const char*>(data), size);
    auto request = vgpu::vnc::parse_http_request(bytes);
    if (request && *request) {
        FUZZ_CHECK((*request)->header_bytes <= size);
        auto resolved = vgpu::vnc::resolve_target(root(), (*request)->target);
        if (resolved.status == 200) {
            FUZZ_CHECK(resolved.path.starts_with(root() + "/"));
            std::string_view rest = std::string_view(resolved.path).substr(root().size());
            FUZZ_CHECK(rest.find("/.") == std::string_view::npos);
        }
        (void)vgpu::vnc::content_type(resolved.path);
    }
    // The target alone too, as a path a request could name.
    auto direct = vgpu::vnc::resolve_target(root(), bytes);
    if (direct.status == 200)
        FUZZ_CHECK(direct.path.starts_with(root() + "/"));
    return 0;
}
