// A blob's guest pages as a dmabuf, for QEMU's DMABUF_SCANOUT2 (vhost-user-gpu.rst): QEMU's GL
// console then shows the guest's pages without any copy. Two exporters:
//   - udmabuf (/dev/udmabuf, UDMABUF_CREATE_LIST): one item per contiguous run of the region
//     memfds, which must be sealed against shrinking, with page-aligned offsets and sizes, within
//     the module's list_limit (items) and size_limit_mb; beyond those it refuses and the blob is
//     sent as UPDATEs instead;
//   - a memfd stand-in for tests on machines without /dev/udmabuf: a sealed memfd holding a copy
//     of the blob's bytes when exported (a copy: never for users).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "virtio/guest_view.h"

namespace vgpu::virtio {

class DmabufExporter {
public:
    virtual ~DmabufExporter() = default;
    virtual const char* name() const = 0;
    // A dmabuf (or stand-in) of the first `size` bytes of `ranges`.
    virtual Result<Fd>
    export_ranges(const GuestMemory& memory, std::span<const GuestRange> ranges, uint64_t size) = 0;
};

struct UdmabufLimits {
    uint64_t list_limit = 1024; // udmabuf's module defaults
    uint64_t size_limit_mb = 64;
};
// The udmabuf exporter, or an error saying why there is none (no /dev/udmabuf here).
Result<std::unique_ptr<DmabufExporter>> make_udmabuf_exporter();
// The module parameters from /sys/module/udmabuf/parameters (defaults where unreadable).
UdmabufLimits read_udmabuf_limits();
std::unique_ptr<DmabufExporter> make_memfd_standin_exporter();

} // namespace vgpu::virtio
