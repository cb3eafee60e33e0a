// Command-line options (vhost-user.rst "Backend program conventions").
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "base/log.h"
#include "base/result.h"

namespace vgpu::app {

struct Options {
    std::optional<std::string> socket_path;
    std::optional<int> fd;
    bool print_capabilities = false;
    bool offer_configure_mem_slots = true;
    log::Level log_level = log::Level::Info;
};

// What parsing decided: run with options, or exit now with a code after printing `text`
// (help goes to stdout with 0, errors to stderr with 2).
struct ExitNow {
    int code;
    std::string text;
};

std::variant<Options, ExitNow> parse_options(int argc, char** argv);

} // namespace vgpu::app
