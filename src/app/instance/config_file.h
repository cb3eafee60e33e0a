// The configuration file (docs/libvirt.md): what a command line would say, for a backend that
// libvirt starts with nothing but --fd=N. One key per line, named like the long option it stands
// for; a [domain NAME] section overrides the keys before any section for that domain:
//
//   # /etc/vgpu-display/vgpu-display.conf
//   log = file:/var/log/vgpu-display/{domain}.log
//   control = /run/vgpu-display/{domain}.control
//   [domain web-1]
//   output = 1920x1080
//
// Values may name {domain} (the libvirt domain, or pid-PID without one) and {pid}.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vgpu::instance {

// /etc/vgpu-display/vgpu-display.conf, unless VGPU_DISPLAY_CONFIG (or --config) names another.
inline constexpr const char* DEFAULT_CONFIG_PATH = "/etc/vgpu-display/vgpu-display.conf";
inline constexpr const char* CONFIG_ENVIRONMENT = "VGPU_DISPLAY_CONFIG";

struct ConfigEntry {
    std::string key;
    std::string value;
    unsigned line = 0;
};

struct ConfigSection {
    std::string domain;
    unsigned line = 0;
    std::vector<ConfigEntry> entries;
};

struct ConfigFile {
    std::string path;
    std::vector<ConfigEntry> global;
    std::vector<ConfigSection> domains;
};

// What the file may say: each key the command line takes as a long option.
enum class KeyKind {
    Unknown,
    Single, // a value; a second one in the same section is an error
    Repeatable, // such as output: every line adds one
    Flag, // true or false
    CommandLineOnly, // such as fd: what only the one who starts us can say
};
using KeyRules = std::function<KeyKind(std::string_view key)>;

// Errors name the file and line: "PATH:LINE: what is wrong".
Result<ConfigFile> parse_config(
    std::string_view text, const std::string& path, const KeyRules& rules);
// Reads and parses PATH.
Result<ConfigFile> load_config(const std::string& path, const KeyRules& rules);

// Who this backend is for, as far as it can know (libvirt's pid file name, app/instance/libvirt.h).
struct DomainIdentity {
    std::string name;
    // libvirt cuts names to their first 20 bytes in its file names: the real name may be longer.
    bool maybe_truncated = false;
};

// The entries that apply: the global ones, with each key that the domain's section names replaced
// by that section's lines. A cut-short name picks the one section whose name starts with it;
// several such sections are an error.
Result<std::vector<ConfigEntry>> select_entries(
    const ConfigFile& config, const std::optional<DomainIdentity>& domain);

// The section that applies to `domain`, if any (for the log's start line).
Result<const ConfigSection*> find_section(
    const ConfigFile& config, const std::optional<DomainIdentity>& domain);

struct Substitutions {
    std::string domain; // the domain's name, or pid-PID
    pid_t pid = 0;
};
// "{domain}" and "{pid}" in a value; "{{" is a literal "{". Anything else in braces is an error.
Result<std::string> expand(std::string_view value, const Substitutions& substitutions);

// "true"/"false" (also yes/no, on/off, 1/0).
Result<bool> parse_bool(std::string_view text);

} // namespace vgpu::instance
