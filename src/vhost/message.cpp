#include "vhost/message.h"

#include <cstring>

#include "base/checked.h"

namespace vgpu::vhost {

namespace {

template <typename T>
T load(std::span<const std::byte> payload, size_t offset = 0)
{
    T value;
    std::memcpy(&value, payload.data() + offset, sizeof(T));
    return value;
}

virtio::RegionDescription to_description(const MemoryRegion& r)
{
    return { r.guest_address, r.size, r.user_address, r.mmap_offset };
}

struct Decoder {
    const Header& header;
    std::span<const std::byte> payload;
    size_t fd_count;

    Result<void> expect(size_t size, size_t fds) const
    {
        if (payload.size() != size)
            return Error::format("{}: payload of {} bytes, expected {}",
                request_name(header.request), payload.size(), size);
        if (fd_count != fds)
            return Error::format("{}: {} file descriptors, expected {}",
                request_name(header.request), fd_count, fds);
        return {};
    }
    Result<uint64_t> u64_payload() const
    {
        TRY(expect(sizeof(uint64_t), 0));
        return load<uint64_t>(payload);
    }
    Result<VringState> vring_state() const
    {
        TRY(expect(sizeof(VringState), 0));
        return load<VringState>(payload);
    }
    Result<DecodedRequest> vring_fd(req::VringFdKind kind) const
    {
        if (payload.size() != sizeof(uint64_t))
            return Error::format("{}: payload of {} bytes, expected 8",
                request_name(header.request), payload.size());
        auto value = load<uint64_t>(payload);
        if (value & ~(VRING_INDEX_MASK | VRING_NOFD_MASK))
            return Error::format(
                "{}: reserved bits set in {:#x}", request_name(header.request), value);
        bool has_fd = !(value & VRING_NOFD_MASK);
        TRY(expect(sizeof(uint64_t), has_fd ? 1 : 0));
        return req::SetVringFd { kind, uint32_t(value & VRING_INDEX_MASK), has_fd };
    }
    Result<virtio::RegionDescription> single_region(size_t fds) const
    {
        TRY(expect(sizeof(SingleMemoryRegion), fds));
        return to_description(load<SingleMemoryRegion>(payload).region);
    }
    Result<DecodedRequest> mem_table() const
    {
        if (payload.size() < sizeof(MemoryTableHeader))
            return Error::format("SET_MEM_TABLE: payload of {} bytes is too short", payload.size());
        auto table = load<MemoryTableHeader>(payload);
        if (table.nregions == 0 || table.nregions > MAX_FDS)
            return Error::format(
                "SET_MEM_TABLE: {} regions, expected 1..{}", table.nregions, MAX_FDS);
        TRY(expect(
            sizeof(MemoryTableHeader) + table.nregions * sizeof(MemoryRegion), table.nregions));
        req::SetMemTable out;
        for (size_t i = 0; i < table.nregions; ++i)
            out.regions.push_back(to_description(
                load<MemoryRegion>(payload, sizeof(MemoryTableHeader) + i * sizeof(MemoryRegion))));
        return out;
    }
    Result<ConfigHeader> config_header() const
    {
        if (fd_count != 0)
            return Error::format(
                "{}: {} file descriptors, expected 0", request_name(header.request), fd_count);
        if (payload.size() < sizeof(ConfigHeader))
            return Error::format("{}: payload of {} bytes is too short",
                request_name(header.request), payload.size());
        auto config = load<ConfigHeader>(payload);
        if (config.size > MAX_CONFIG_SIZE)
            return Error::format("{}: config size {} exceeds {}", request_name(header.request),
                config.size, MAX_CONFIG_SIZE);
        // GET_CONFIG carries a buffer of `size` bytes too (QEMU sends it zeroed).
        if (payload.size() != sizeof(ConfigHeader) + config.size)
            return Error::format("{}: payload of {} bytes does not match config size {}",
                request_name(header.request), payload.size(), config.size);
        return config;
    }
};

} // namespace

std::string_view request_name(uint32_t request)
{
    switch (static_cast<Request>(request)) {
#define NAME(id, text)                                                                             \
    case Request::id:                                                                              \
        return text;
        NAME(GetFeatures, "GET_FEATURES")
        NAME(SetFeatures, "SET_FEATURES")
        NAME(SetOwner, "SET_OWNER")
        NAME(ResetOwner, "RESET_OWNER")
        NAME(SetMemTable, "SET_MEM_TABLE")
        NAME(SetLogBase, "SET_LOG_BASE")
        NAME(SetLogFd, "SET_LOG_FD")
        NAME(SetVringNum, "SET_VRING_NUM")
        NAME(SetVringAddr, "SET_VRING_ADDR")
        NAME(SetVringBase, "SET_VRING_BASE")
        NAME(GetVringBase, "GET_VRING_BASE")
        NAME(SetVringKick, "SET_VRING_KICK")
        NAME(SetVringCall, "SET_VRING_CALL")
        NAME(SetVringErr, "SET_VRING_ERR")
        NAME(GetProtocolFeatures, "GET_PROTOCOL_FEATURES")
        NAME(SetProtocolFeatures, "SET_PROTOCOL_FEATURES")
        NAME(GetQueueNum, "GET_QUEUE_NUM")
        NAME(SetVringEnable, "SET_VRING_ENABLE")
        NAME(SendRarp, "SEND_RARP")
        NAME(NetSetMtu, "NET_SET_MTU")
        NAME(SetBackendReqFd, "SET_BACKEND_REQ_FD")
        NAME(IotlbMsg, "IOTLB_MSG")
        NAME(SetVringEndian, "SET_VRING_ENDIAN")
        NAME(GetConfig, "GET_CONFIG")
        NAME(SetConfig, "SET_CONFIG")
        NAME(GetInflightFd, "GET_INFLIGHT_FD")
        NAME(SetInflightFd, "SET_INFLIGHT_FD")
        NAME(GpuSetSocket, "GPU_SET_SOCKET")
        NAME(ResetDevice, "RESET_DEVICE")
        NAME(VringKick, "VRING_KICK")
        NAME(GetMaxMemSlots, "GET_MAX_MEM_SLOTS")
        NAME(AddMemReg, "ADD_MEM_REG")
        NAME(RemMemReg, "REM_MEM_REG")
        NAME(SetStatus, "SET_STATUS")
        NAME(GetStatus, "GET_STATUS")
#undef NAME
    }
    return "UNKNOWN";
}

Result<void> validate_header(const Header& header)
{
    if ((header.flags & FLAG_VERSION_MASK) != VERSION)
        return Error::format("message version {} (flags {:#x}), expected {}",
            header.flags & FLAG_VERSION_MASK, header.flags, VERSION);
    if (header.flags & FLAG_REPLY)
        return Error::format("{}: reply flag set on a request", request_name(header.request));
    if (header.size > MAX_PAYLOAD)
        return Error::format("{}: payload of {} bytes exceeds the limit of {}",
            request_name(header.request), header.size, MAX_PAYLOAD);
    return {};
}

bool has_mandatory_reply(uint32_t request)
{
    switch (static_cast<Request>(request)) {
    case Request::GetFeatures:
    case Request::GetProtocolFeatures:
    case Request::GetVringBase:
    case Request::GetConfig:
    case Request::GetQueueNum:
    case Request::GetMaxMemSlots:
    case Request::GetStatus:
    case Request::GetInflightFd:
        return true;
    default:
        return false;
    }
}

Result<DecodedRequest> decode_request(
    const Header& header, std::span<const std::byte> payload, size_t fd_count)
{
    Decoder d { header, payload, fd_count };
    switch (static_cast<Request>(header.request)) {
    case Request::GetFeatures:
        TRY(d.expect(0, 0));
        return req::GetFeatures {};
    case Request::SetFeatures:
        return req::SetFeatures { TRY(d.u64_payload()) };
    case Request::SetOwner:
        TRY(d.expect(0, 0));
        return req::SetOwner {};
    case Request::ResetOwner:
        TRY(d.expect(0, 0));
        return req::ResetOwner {};
    case Request::SetMemTable:
        return d.mem_table();
    case Request::SetVringNum: {
        auto s = TRY(d.vring_state());
        return req::SetVringNum { s.index, s.num };
    }
    case Request::SetVringAddr:
        TRY(d.expect(sizeof(VringAddr), 0));
        return req::SetVringAddr { load<VringAddr>(payload) };
    case Request::SetVringBase: {
        auto s = TRY(d.vring_state());
        return req::SetVringBase { s.index, s.num };
    }
    case Request::GetVringBase:
        return req::GetVringBase { TRY(d.vring_state()).index };
    case Request::SetVringKick:
        return d.vring_fd(req::VringFdKind::Kick);
    case Request::SetVringCall:
        return d.vring_fd(req::VringFdKind::Call);
    case Request::SetVringErr:
        return d.vring_fd(req::VringFdKind::Err);
    case Request::GetProtocolFeatures:
        TRY(d.expect(0, 0));
        return req::GetProtocolFeatures {};
    case Request::SetProtocolFeatures:
        return req::SetProtocolFeatures { TRY(d.u64_payload()) };
    case Request::GetQueueNum:
        TRY(d.expect(0, 0));
        return req::GetQueueNum {};
    case Request::SetVringEnable: {
        auto s = TRY(d.vring_state());
        if (s.num > 1)
            return Error::format("SET_VRING_ENABLE: state {} is neither 0 nor 1", s.num);
        return req::SetVringEnable { s.index, s.num == 1 };
    }
    case Request::SetBackendReqFd:
        TRY(d.expect(0, 1));
        return req::SetBackendReqFd {};
    case Request::GetConfig: {
        auto c = TRY(d.config_header());
        return req::GetConfig { c.offset, c.size, c.flags };
    }
    case Request::SetConfig: {
        auto c = TRY(d.config_header());
        auto data = payload.subspan(sizeof(ConfigHeader));
        return req::SetConfig { c.offset, c.flags,
            std::vector<std::byte>(data.begin(), data.end()) };
    }
    case Request::GpuSetSocket:
        TRY(d.expect(0, 1));
        return req::GpuSetSocket {};
    case Request::ResetDevice:
        TRY(d.expect(0, 0));
        return req::ResetDevice {};
    case Request::GetMaxMemSlots:
        TRY(d.expect(0, 0));
        return req::GetMaxMemSlots {};
    case Request::AddMemReg:
        return req::AddMemReg { TRY(d.single_region(1)) };
    case Request::RemMemReg:
        // vhost-user.rst: no fd SHOULD be passed, but a backend MAY accept one for compatibility
        // with frontends that do, and must then close it unused.
        return req::RemMemReg { TRY(d.single_region(fd_count == 1 ? 1 : 0)) };
    case Request::SetStatus: {
        auto status = TRY(d.u64_payload());
        if (status > 0xff)
            return Error::format("SET_STATUS: status {:#x} does not fit in 8 bits", status);
        return req::SetStatus { uint8_t(status) };
    }
    case Request::GetStatus:
        TRY(d.expect(0, 0));
        return req::GetStatus {};
    case Request::SetLogBase:
    case Request::SetLogFd:
    case Request::SendRarp:
    case Request::NetSetMtu:
    case Request::IotlbMsg:
    case Request::SetVringEndian:
    case Request::GetInflightFd:
    case Request::SetInflightFd:
    case Request::VringKick:
        return Error::format(
            "{}: not supported (its feature was not offered)", request_name(header.request));
    }
    return Error::format("unknown request {}", header.request);
}

} // namespace vgpu::vhost
