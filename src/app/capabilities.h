// What this build can provide on this host, for --print-capabilities (libvirt reads it and
// refuses to start a domain that asks for a feature not listed; listing one we cannot provide,
// such as render-node without a DRM render node, breaks the domain instead).
#pragma once

#include <string>

namespace vgpu::app {

struct CapabilityOptions {
    bool blob_forced = false; // --blob
    unsigned release_timeout_ms = 20;
    const char* dmabuf = nullptr; // what --dmabuf asks for
    bool outputs_from_backend = false; // --outputs-from backend
    bool export_guest_memory = false; // --export-guest-memory
};

// The vhost-user.json fields ("type", "features": libvirt reads only these) and ours beside them.
std::string capabilities_json(const CapabilityOptions& options);

} // namespace vgpu::app
