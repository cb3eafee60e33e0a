// vgpu-ctl's export socket commands (docs/export.md): `planes` probes, `watch` leases an output
// and prints its records. They speak the export protocol through the consumer library, as any
// consumer does; `leases` and `lease-revoke` go through the control socket instead.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "app/tools/ctl_connection.h"

namespace vgpu::ctl {

struct WatchOptions {
    uint32_t output = 0;
    bool exclusive = false;
    std::optional<uint32_t> flips; // stop after this many FLIP records
    bool json = false;
    int interrupt_fd = -1; // a signalfd: stop when readable
};

// planes --export PATH: the probe's answer, as text or JSON.
CtlResult<void> export_planes(const std::string& path, bool json_output,
    std::chrono::milliseconds timeout, const std::function<bool(std::string_view)>& print);
// watch OUTPUT --export PATH: one line (or JSON object) per record, each FLIP acknowledged.
CtlResult<void> export_watch(const std::string& path, const WatchOptions& options,
    std::chrono::milliseconds timeout, const std::function<bool(std::string_view)>& print);

} // namespace vgpu::ctl
