// `vgpu-ctl list` and `vgpu-ctl --domain NAME`: the running backends, from our instance records
// (app/instance/registry.h) and libvirt's vhost-user-gpu pid files (app/instance/libvirt.h), which
// name the domain of each backend libvirt started (ours, or another program such as QEMU's).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "app/tools/ctl_connection.h"

namespace vgpu::ctl {

struct Backend {
    pid_t pid = 0;
    std::string program; // /proc/PID/exe's file name
    std::string domain; // empty: not started by libvirt
    std::string alias;
    bool ours = false; // has an instance record: a vgpu-display
    std::optional<std::string> control;
    std::optional<std::string> export_path;
    std::string log;
    std::string pid_file; // libvirt's, if any
};

// Sorted by domain, then pid.
std::vector<Backend> find_backends();

// The backend of domain NAME (libvirt cuts names to 20 characters in its pid files: a longer NAME
// matches its first 20). Errors: none, or several (one per video device: use --control).
CtlResult<Backend> backend_of_domain(const std::vector<Backend>& backends, const std::string& name);

std::string format_backends(const std::vector<Backend>& backends);
json backends_json(const std::vector<Backend>& backends);

} // namespace vgpu::ctl
