// vhost-user wire format (QEMU docs/interop/vhost-user.rst). Native byte order (x86: little
// endian), packed as the spec shows it.
#pragma once

#include <cstdint>
#include <type_traits>

namespace vgpu::vhost {

// Frontend -> backend requests.
enum class Request : uint32_t {
    GetFeatures = 1,
    SetFeatures = 2,
    SetOwner = 3,
    ResetOwner = 4,
    SetMemTable = 5,
    SetLogBase = 6,
    SetLogFd = 7,
    SetVringNum = 8,
    SetVringAddr = 9,
    SetVringBase = 10,
    GetVringBase = 11,
    SetVringKick = 12,
    SetVringCall = 13,
    SetVringErr = 14,
    GetProtocolFeatures = 15,
    SetProtocolFeatures = 16,
    GetQueueNum = 17,
    SetVringEnable = 18,
    SendRarp = 19,
    NetSetMtu = 20,
    SetBackendReqFd = 21,
    IotlbMsg = 22,
    SetVringEndian = 23,
    GetConfig = 24,
    SetConfig = 25,
    GetInflightFd = 31,
    SetInflightFd = 32,
    GpuSetSocket = 33,
    ResetDevice = 34,
    VringKick = 35,
    GetMaxMemSlots = 36,
    AddMemReg = 37,
    RemMemReg = 38,
    SetStatus = 39,
    GetStatus = 40,
};

// Backend -> frontend requests on the backend channel (SET_BACKEND_REQ_FD).
enum class BackendRequest : uint32_t {
    IotlbMsg = 1,
    ConfigChangeMsg = 2,
    VringHostNotifierMsg = 3,
};

// vhost-user.rst "Header".
struct Header {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
};
static_assert(sizeof(Header) == 12 && std::is_trivially_copyable_v<Header>);

constexpr uint32_t FLAG_VERSION_MASK = 0x3;
constexpr uint32_t VERSION = 0x1;
constexpr uint32_t FLAG_REPLY = 1u << 2;
constexpr uint32_t FLAG_NEED_REPLY = 1u << 3;

// Our framing limits. The largest request we accept is GET/SET_CONFIG (12 + 256 bytes) or a full
// SET_MEM_TABLE (8 + 8 * 32); 4 KiB leaves room and refuses anything absurd before reading it.
constexpr uint32_t MAX_PAYLOAD = 4096;
// vhost-user.rst: SET_MEM_TABLE carries at most VHOST_MEMORY_BASELINE_NREGIONS (8) fds.
constexpr uint32_t MAX_FDS = 8;
constexpr uint32_t MAX_CONFIG_SIZE = 256;

// vhost-user.rst "A vring state description".
struct VringState {
    uint32_t index;
    uint32_t num;
};
static_assert(sizeof(VringState) == 8);

// "A vring address description".
struct VringAddr {
    uint32_t index;
    uint32_t flags; // bit 0: log address valid
    uint64_t descriptor;
    uint64_t used;
    uint64_t available;
    uint64_t log;
};
static_assert(sizeof(VringAddr) == 40);

// "Memory region description".
struct MemoryRegion {
    uint64_t guest_address;
    uint64_t size;
    uint64_t user_address;
    uint64_t mmap_offset;
};
static_assert(sizeof(MemoryRegion) == 32);

// "Multiple Memory regions description" header; the regions follow.
struct MemoryTableHeader {
    uint32_t nregions;
    uint32_t padding;
};
static_assert(sizeof(MemoryTableHeader) == 8);

// "Single memory region description" (ADD_MEM_REG, REM_MEM_REG).
struct SingleMemoryRegion {
    uint64_t padding;
    MemoryRegion region;
};
static_assert(sizeof(SingleMemoryRegion) == 40);

// "Device config space" header; `size` bytes of config follow.
struct ConfigHeader {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
};
static_assert(sizeof(ConfigHeader) == 12);

// vring kick/call/err payload: bits 0-7 the index, bit 8 "no fd".
constexpr uint64_t VRING_INDEX_MASK = 0xff;
constexpr uint64_t VRING_NOFD_MASK = 1u << 8;

// Virtio feature bit 30: the backend speaks protocol features.
constexpr unsigned F_PROTOCOL_FEATURES = 30;

// Protocol feature bits.
enum ProtocolFeature : unsigned {
    PF_MQ = 0,
    PF_LOG_SHMFD = 1,
    PF_RARP = 2,
    PF_REPLY_ACK = 3,
    PF_MTU = 4,
    PF_BACKEND_REQ = 5,
    PF_CROSS_ENDIAN = 6,
    PF_CRYPTO_SESSION = 7,
    PF_PAGEFAULT = 8,
    PF_CONFIG = 9,
    PF_BACKEND_SEND_FD = 10,
    PF_HOST_NOTIFIER = 11,
    PF_INFLIGHT_SHMFD = 12,
    PF_RESET_DEVICE = 13,
    PF_INBAND_NOTIFICATIONS = 14,
    PF_CONFIGURE_MEM_SLOTS = 15,
    PF_STATUS = 16,
};

} // namespace vgpu::vhost
