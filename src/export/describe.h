// Export records as one line of text each (vgpu-ctl watch, vgpu-view's log, test messages): pure
// functions of a parsed message, so that every consumer prints them the same way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "export/codec.h"

namespace vgpu::exporting {

// A DRM fourcc as its four characters ("XR24"); unprintable bytes as '?'.
std::string fourcc_name(uint32_t fourcc);
// The plane type bits as their names (PLANE_TYPE_NAMES, in bit order).
std::vector<std::string> plane_type_list(uint32_t plane_types);
// The same as a comma-separated list ("region,dmabuf"); "none" for 0.
std::string plane_type_names(uint32_t plane_types);
// The bit of one name; nullopt for anything else.
std::optional<PlaneType> plane_type_named(std::string_view name);
// One record, without '\n':
//   flip generation=G covers=K buffer=B damage=X,Y,WxH[;X,Y,WxH...]
//   crc generation=G 0xCCCCCCCC
//   buffer B WxH XR24 stride=S size=N plane=region
//   buffer-gone B
//   mode WxH | mode disabled
//   cursor buffer=B at X,Y hot X,Y [moved]
//   revoked reason=control|output-gone|device-reset|frontend-gone|no-ack
//   error CODE text
// and the type name for anything else.
std::string record_line(const Message& message);

} // namespace vgpu::exporting
