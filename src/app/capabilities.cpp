#include "app/capabilities.h"

#include <nlohmann/json.hpp>

namespace vgpu::app {

std::string capabilities_json()
{
    // vhost-user.json "VHostUserBackendCapabilitiesGPU": render-node and virgl are the only
    // defined features, and this backend offers neither (no 3D).
    nlohmann::json caps = {
        { "type", "gpu" },
        { "features", nlohmann::json::array() },
    };
    return caps.dump(2);
}

} // namespace vgpu::app
