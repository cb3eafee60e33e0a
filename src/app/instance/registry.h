// The instance registry: each running backend writes RUNTIME_DIR/<pid>.json (its domain, control
// and export sockets, log) and removes it when it exits, so that `vgpu-ctl list` and `vgpu-ctl
// --domain NAME` find backends that libvirt started with nothing but --fd=N. RUNTIME_DIR is
// $VGPU_DISPLAY_RUNTIME_DIR, else /run/vgpu-display for root, else $XDG_RUNTIME_DIR/vgpu-display.
// A record whose process is gone (killed) is stale: readers skip it.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace vgpu::instance {

inline constexpr const char* RUNTIME_DIR_ENVIRONMENT = "VGPU_DISPLAY_RUNTIME_DIR";

struct InstanceRecord {
    pid_t pid = 0;
    std::string domain; // empty without libvirt
    std::string alias;
    std::optional<std::string> control;
    std::optional<std::string> export_path;
    std::string log; // where the log goes: stderr, syslog, or the file's path
    std::string config; // the configuration file read, or empty
    std::string version;
};

std::optional<std::string> runtime_dir();

// Written atomically (a temporary file renamed); the directory is made if need be.
Result<std::string> write_record(const std::string& dir, const InstanceRecord& record);
void remove_record(const std::string& dir, pid_t pid);

// Records of processes that are alive and are vgpu-display (a reused pid is not).
std::vector<InstanceRecord> read_records(const std::string& dir);

std::string record_json(const InstanceRecord& record);
std::optional<InstanceRecord> parse_record(const std::string& text);

} // namespace vgpu::instance
