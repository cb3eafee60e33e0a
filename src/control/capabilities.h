// What the device can do beyond the vhost-user.json schema, said the same way by
// --print-capabilities (key "vgpu-display") and query-capabilities.
#pragma once

#include <nlohmann/json.hpp>

#include "export/describe.h"
#include "export/wire.h"

namespace vgpu::control {

// RESOURCE_BLOB is offered to every frontend; with --blob (`blob_forced`) the blob commands are
// taken even when the driver did not negotiate it. `dmabuf` is how blobs reach QEMU's GL console
// ("udmabuf", "memfd-test", or null: UPDATE messages). `outputs_from_backend` is
// --outputs-from: who tells the guest its monitors when QEMU gives its display socket.
// `export_guest_memory`: --export-guest-memory, the guest-memory plane for trusted consumers.
inline nlohmann::json device_capabilities(bool blob_forced, unsigned release_timeout_ms,
    const char* dmabuf, bool outputs_from_backend, bool export_guest_memory)
{
    // The export socket (docs/export.md): what a consumer's probe would say about plane types,
    // so that management knows it without connecting. Only what this build can hand out.
    // With --export-guest-memory, the blob's pages too: always as guest memory, and as a dmabuf
    // where blobs have one (--dmabuf: /dev/udmabuf opens, or the test stand-in).
    uint32_t plane_types = exporting::PLANE_REGION;
    if (export_guest_memory)
        plane_types |= exporting::PLANE_GUEST_MEMORY;
    if (export_guest_memory && dmabuf)
        plane_types |= exporting::PLANE_DMABUF;
    nlohmann::json export_caps = {
        { "protocol",
            nlohmann::json::array({ exporting::VERSION_MAJOR, exporting::VERSION_MINOR }) },
        { "plane-types", exporting::plane_type_list(plane_types) }
    };
    return { { "outputs-from", outputs_from_backend ? "backend" : "qemu" },
        { "export", export_caps },
        { "blob",
            { { "offered", true }, { "forced", blob_forced },
                { "blob-mem", nlohmann::json::array({ "guest" }) },
                { "release-timeout-ms", release_timeout_ms },
                { "dmabuf", dmabuf ? nlohmann::json(dmabuf) : nlohmann::json(nullptr) } } } };
}

} // namespace vgpu::control
