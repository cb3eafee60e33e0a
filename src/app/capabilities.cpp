#include "app/capabilities.h"

#include <nlohmann/json.hpp>

#include "control/capabilities.h"

namespace vgpu::app {

std::string capabilities_json(const CapabilityOptions& options)
{
    // vhost-user.json "VHostUserBackendCapabilitiesGPU": render-node and virgl are the only
    // defined features, and this backend offers neither (no 3D). Blob resources are no feature
    // that schema knows: they are said in a key of our own, which libvirt ignores.
    nlohmann::json caps = {
        { "type", "gpu" },
        { "features", nlohmann::json::array() },
        { "vgpu-display",
            control::device_capabilities(options.blob_forced, options.release_timeout_ms,
                options.dmabuf, options.outputs_from_backend, options.export_guest_memory) },
    };
    return caps.dump(2);
}

} // namespace vgpu::app
