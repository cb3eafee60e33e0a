#include "virtio_gpu/formats.h"

#include <array>

namespace vgpu::virtio_gpu {

namespace {
constexpr std::array<FormatInfo, 8> formats { {
    { Format::B8G8R8A8Unorm, PIXMAN_a8r8g8b8, true, "B8G8R8A8" },
    { Format::B8G8R8X8Unorm, PIXMAN_x8r8g8b8, false, "B8G8R8X8" },
    { Format::A8R8G8B8Unorm, PIXMAN_b8g8r8a8, true, "A8R8G8B8" },
    { Format::X8R8G8B8Unorm, PIXMAN_b8g8r8x8, false, "X8R8G8B8" },
    { Format::R8G8B8A8Unorm, PIXMAN_a8b8g8r8, true, "R8G8B8A8" },
    { Format::X8B8G8R8Unorm, PIXMAN_r8g8b8x8, false, "X8B8G8R8" },
    { Format::A8B8G8R8Unorm, PIXMAN_r8g8b8a8, true, "A8B8G8R8" },
    { Format::R8G8B8X8Unorm, PIXMAN_x8b8g8r8, false, "R8G8B8X8" },
} };
} // namespace

std::optional<FormatInfo> format_info(uint32_t format)
{
    for (const auto& f : formats)
        if (uint32_t(f.format) == format)
            return f;
    return std::nullopt;
}

bool is_x8r8g8b8_layout(Format format) { return format == Format::B8G8R8X8Unorm || format == Format::B8G8R8A8Unorm; }

} // namespace vgpu::virtio_gpu
