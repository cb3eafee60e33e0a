// Command-line options (vhost-user.rst "Backend program conventions"), and the configuration file
// (app/instance/config_file.h) that says the same for a backend libvirt starts with only --fd=N.
// The command line wins over a [domain NAME] section, which wins over the file's other lines.
#pragma once

#include <chrono>

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "app/instance/config_file.h"
#include "app/instance/libvirt.h"
#include "virtio_gpu/device.h"

#include "base/log.h"
#include "base/result.h"

namespace vgpu::app {

// --log: stderr, syslog, or file:PATH (a path alone is a file too).
struct LogDestination {
    enum class Kind {
        Stderr,
        Syslog,
        File,
    } kind = Kind::Stderr;
    std::string path;
};
Result<LogDestination> parse_log_destination(std::string_view text);
std::string describe(const LogDestination& destination);

// What parsing needs to know of the process: the environment and who started it.
struct Environment {
    std::optional<std::string> config_path; // $VGPU_DISPLAY_CONFIG
    std::string default_config_path = instance::DEFAULT_CONFIG_PATH; // read if it exists
    std::optional<instance::LibvirtStart> libvirt; // the libvirt pid file we hold open
    pid_t pid = 0;
    bool root = false;
    bool stderr_is_null = false; // libvirt's daemonized start: the log must go elsewhere
    std::string home; // $XDG_STATE_HOME or $HOME/.local/state, for a non-root log file
    static Environment of_this_process();
};

struct Options {
    std::optional<std::string> socket_path;
    std::optional<int> fd;
    bool print_capabilities = false;
    bool offer_configure_mem_slots = true;
    // Our own outputs (what the guest is told without QEMU's display socket, or always with
    // --outputs-from backend); one 1280x800 by default.
    std::vector<virtio_gpu::OutputMode> outputs;
    bool outputs_from_backend = false;
    uint64_t max_hostmem = 256ull << 20;
    bool blob = false;
    // How blobs reach QEMU's GL console as dmabufs (--dmabuf): off (UPDATEs), udmabuf, or the
    // harness's memfd stand-in.
    enum class Dmabuf {
        Off,
        Udmabuf,
        MemfdTest,
    } dmabuf = Dmabuf::Off;
    std::chrono::milliseconds release_timeout { 20 };
    std::optional<std::string> control_path;
    // The export socket (docs/export.md): its path, permissions and group.
    std::optional<std::string> export_path;
    mode_t export_mode = 0600;
    std::optional<gid_t> export_group;
    // --export-guest-memory: trusted consumers may get blobs as guest RAM (zero copy).
    bool export_guest_memory = false;
    size_t max_control_clients = 16;
    mode_t socket_mode = 0600;
    mode_t control_mode = 0600;
    log::Level log_level = log::Level::Info;
    LogDestination log;
    // Who we serve, and what configured us (for the log's first line and the instance record).
    std::optional<instance::LibvirtStart> libvirt;
    std::string config_path; // empty: no file was read
    std::string config_section; // the [domain NAME] that applied, if any
};

// What parsing decided: run with options, or exit now with a code after printing `text`
// (help goes to stdout with 0, errors to stderr with 2).
struct ExitNow {
    int code;
    std::string text;
    // Where the error line must go as well: under libvirt nobody reads stderr.
    std::optional<LogDestination> log = std::nullopt;
};

std::variant<Options, ExitNow> parse_options(int argc, char** argv, const Environment& environment);
std::variant<Options, ExitNow> parse_options(int argc, char** argv);
// "1280x800" -> a mode within 16..8192 on each side.
Result<virtio_gpu::OutputMode> parse_mode(std::string_view text);
// "256M", "1G", "1048576" -> bytes.
Result<uint64_t> parse_size(std::string_view text);
// A group name or number (--export-group).
Result<gid_t> parse_group(const std::string& text);
// "0660", "660" -> a permission mode (octal, at most 0777).
Result<mode_t> parse_mode_bits(std::string_view text);
// Whether two paths name the same file (or would, once created).
bool same_path(const std::string& a, const std::string& b);

} // namespace vgpu::app
