// vhost-user requests decoded and validated: each request's payload size, fd count and fields are
// checked here, once, before any handler runs. decode_request is pure (no I/O), which makes it the
// fuzz target for the message parser.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

#include "base/result.h"
#include "vhost/wire.h"
#include "virtio/guest_memory.h"

namespace vgpu::vhost {

namespace req {
struct GetFeatures { };
struct SetFeatures {
    uint64_t features;
};
struct SetOwner { };
struct ResetOwner { };
struct SetMemTable {
    std::vector<virtio::RegionDescription> regions;
};
struct SetVringNum {
    uint32_t index;
    uint32_t num;
};
struct SetVringAddr {
    VringAddr addr;
};
struct SetVringBase {
    uint32_t index;
    uint32_t num;
};
struct GetVringBase {
    uint32_t index;
};
// SET_VRING_KICK, CALL and ERR: which eventfd, and whether one came with the message.
enum class VringFdKind {
    Kick,
    Call,
    Err
};
struct SetVringFd {
    VringFdKind kind;
    uint32_t index;
    bool has_fd;
};
struct GetProtocolFeatures { };
struct SetProtocolFeatures {
    uint64_t features;
};
struct GetQueueNum { };
struct SetVringEnable {
    uint32_t index;
    bool enable;
};
struct SetBackendReqFd { };
struct GetConfig {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
};
struct SetConfig {
    uint32_t offset;
    uint32_t flags;
    std::vector<std::byte> data;
};
struct GpuSetSocket { };
struct ResetDevice { };
struct GetMaxMemSlots { };
struct AddMemReg {
    virtio::RegionDescription region;
};
struct RemMemReg {
    virtio::RegionDescription region;
};
struct SetStatus {
    uint8_t status;
};
struct GetStatus { };
} // namespace req

using DecodedRequest = std::variant<req::GetFeatures, req::SetFeatures, req::SetOwner,
    req::ResetOwner, req::SetMemTable, req::SetVringNum, req::SetVringAddr, req::SetVringBase,
    req::GetVringBase, req::SetVringFd, req::GetProtocolFeatures, req::SetProtocolFeatures,
    req::GetQueueNum, req::SetVringEnable, req::SetBackendReqFd, req::GetConfig, req::SetConfig,
    req::GpuSetSocket, req::ResetDevice, req::GetMaxMemSlots, req::AddMemReg, req::RemMemReg,
    req::SetStatus, req::GetStatus>;

std::string_view request_name(uint32_t request);

// Framing checks on a header alone: version 1, no reply flag, payload within MAX_PAYLOAD.
// A failure here means the stream cannot be trusted any more.
Result<void> validate_header(const Header& header);

// Decodes one request whose header passed validate_header. `fd_count` is how many descriptors
// arrived with it. Fails with a message naming the request for an unknown or unsupported request,
// a wrong payload size, a wrong fd count or an out-of-range field.
Result<DecodedRequest> decode_request(
    const Header& header, std::span<const std::byte> payload, size_t fd_count);

// Whether the spec obliges the backend to answer this request (the GET_* family), independent of
// NEED_REPLY.
bool has_mandatory_reply(uint32_t request);

} // namespace vgpu::vhost
