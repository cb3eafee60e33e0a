// What libvirt tells a vhost-user-gpu backend it starts, without telling it: libvirt passes only
// --fd=N, but it writes the backend's pid file, STATE_DIR/<id>-<name>-<alias>-vhost-user-gpu.pid,
// before it execs the backend, and the backend inherits that file open and locked (vircommand.c,
// virCommandSetPidFile). <id>-<name> is virDomainDefGetShortName: the domain id and the name cut to
// its first 20 bytes; <alias> is the video device's (video0, or a user alias ua-...).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vgpu::instance {

inline constexpr size_t LIBVIRT_SHORT_NAME_MAX = 20;
inline constexpr std::string_view LIBVIRT_PID_SUFFIX = "-vhost-user-gpu.pid";

struct LibvirtName {
    int id = -1;
    std::string name; // the domain's name, or its first 20 bytes
    bool maybe_truncated = false; // name is 20 bytes long: the real one may go on
    std::string alias; // the video device
};

// "1-web-video0-vhost-user-gpu.pid" -> {1, "web", false, "video0"}; nullopt for other names.
std::optional<LibvirtName> parse_pid_file_name(std::string_view file_name);

// Where libvirt keeps its QEMU pid files: /run/libvirt/qemu for the system daemon;
// $XDG_RUNTIME_DIR/libvirt/qemu/run for a session one.
std::vector<std::string> libvirt_state_dirs();

// The libvirt pid file this process holds open, if any (/proc/self/fd): who started us, and for
// which domain.
struct LibvirtStart {
    LibvirtName name;
    std::string pid_file;
};
std::optional<LibvirtStart> detect_libvirt_start();

// Every vhost-user-gpu pid file in `dir` whose process is alive (ours or another backend).
struct LibvirtBackend {
    LibvirtName name;
    pid_t pid = 0;
    std::string pid_file;
};
std::vector<LibvirtBackend> list_libvirt_backends(const std::string& dir);

// The full domain name for a cut-short one, from libvirt's status file (DIR/<name>.xml, whose
// <domain> element carries the id); `name.name` when there is nothing better.
std::string full_domain_name(const std::string& dir, const LibvirtName& name);

} // namespace vgpu::instance
