#include "virtio/guest_plane.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>

#include <fmt/format.h>

namespace vgpu::virtio {

Result<GuestPlane> make_guest_plane(
    const GuestMemory& memory, std::span<const GuestRange> ranges, uint64_t size)
{
    GuestPlane plane;
    int first_fd = -1;
    struct stat first { };
    uint64_t left = size;
    for (const auto& range : ranges) {
        if (!left)
            break;
        uint64_t length = std::min(range.length, left);
        auto placed = TRY(memory.place(range.gpa, length));
        if (first_fd < 0) {
            if (::fstat(placed.fd, &first) != 0)
                return Error::from_errno("fstat of a guest memory region");
            first_fd = placed.fd;
        } else if (placed.fd != first_fd) {
            struct stat other { };
            if (::fstat(placed.fd, &other) != 0)
                return Error::from_errno("fstat of a guest memory region");
            if (other.st_dev != first.st_dev || other.st_ino != first.st_ino)
                return Error::format("the blob lies in two guest memory files: one plane has one "
                                     "descriptor");
        }
        if (!plane.extents.empty()
            && plane.extents.back().offset + plane.extents.back().length == placed.fd_offset)
            plane.extents.back().length += length;
        else
            plane.extents.push_back({ placed.fd_offset, length });
        plane.size += length;
        left -= length;
    }
    if (first_fd < 0 || left)
        return Error::format("the ranges cover {} of {} bytes", size - left, size);
    // Read-only: a consumer's PROT_WRITE | MAP_SHARED mapping of it fails.
    Fd reopened(::open(fmt::format("/proc/self/fd/{}", first_fd).c_str(), O_RDONLY | O_CLOEXEC));
    if (!reopened)
        return Error::from_errno("reopening guest memory read-only");
    plane.fd = std::make_shared<const Fd>(std::move(reopened));
    return plane;
}

} // namespace vgpu::virtio
