// Base64 (RFC 4648) for screendumps returned inline over the control socket.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace vgpu::control {

std::string base64_encode(std::span<const std::byte> data);

} // namespace vgpu::control
