// vhost-user header validation and request decoding (vhost/message.h): pure functions, so every
// request kind, payload size and fd count is checked here directly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "vhost/message.h"

namespace vgpu::vhost {
namespace {

using ::testing::HasSubstr;

template <typename T>
std::vector<std::byte> bytes_of(const T& value)
{
    auto span = std::as_bytes(std::span(&value, 1));
    return { span.begin(), span.end() };
}

std::vector<std::byte> zeros(size_t n) { return std::vector<std::byte>(n); }

Header header_for(Request request, size_t payload_size)
{
    return Header { uint32_t(request), VERSION, uint32_t(payload_size) };
}

Result<DecodedRequest> decode(
    Request request, std::span<const std::byte> payload = {}, size_t fds = 0)
{
    return decode_request(header_for(request, payload.size()), payload, fds);
}

Result<DecodedRequest> decode_u64(Request request, uint64_t value, size_t fds = 0)
{
    return decode(request, bytes_of(value), fds);
}

// The decoded alternative, or a test failure.
template <typename T>
const T* as(const Result<DecodedRequest>& result)
{
    if (!result.has_value()) {
        ADD_FAILURE() << "decode failed: " << result.error().message;
        return nullptr;
    }
    const T* alternative = std::get_if<T>(&*result);
    if (!alternative)
        ADD_FAILURE() << "decoded into alternative " << result->index();
    return alternative;
}

std::vector<std::byte> mem_table(uint32_t nregions, size_t regions_in_payload)
{
    std::vector<std::byte> payload = bytes_of(MemoryTableHeader { nregions, 0 });
    for (size_t i = 0; i < regions_in_payload; ++i) {
        MemoryRegion region { 0x100000 * (i + 1), 0x1000 * (i + 1), 0x7f0000000000 + 0x100000 * i,
            0x2000 * i };
        auto bytes = bytes_of(region);
        payload.insert(payload.end(), bytes.begin(), bytes.end());
    }
    return payload;
}

std::vector<std::byte> config_payload(
    uint32_t offset, uint32_t size, uint32_t flags, size_t data_bytes)
{
    std::vector<std::byte> payload = bytes_of(ConfigHeader { offset, size, flags });
    for (size_t i = 0; i < data_bytes; ++i)
        payload.push_back(std::byte(i + 1));
    return payload;
}

const SingleMemoryRegion single_region { 0, { 0x100000000, 0x200000, 0x7f1234560000, 0x1000 } };

// ---- validate_header ------------------------------------------------------------------------

TEST(ValidateHeader, Version1Request_IsValid)
{
    auto result = validate_header({ uint32_t(Request::GetFeatures), VERSION, 0 });

    EXPECT_TRUE(result.has_value());
}

TEST(ValidateHeader, NeedReplyFlag_IsValid)
{
    auto result = validate_header({ uint32_t(Request::SetFeatures), VERSION | FLAG_NEED_REPLY, 8 });

    EXPECT_TRUE(result.has_value());
}

TEST(ValidateHeader, VersionZero_Fails)
{
    auto result = validate_header({ uint32_t(Request::GetFeatures), 0, 0 });

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("version"));
}

TEST(ValidateHeader, VersionTwo_Fails)
{
    auto result = validate_header({ uint32_t(Request::GetFeatures), 2, 0 });

    EXPECT_FALSE(result.has_value());
}

TEST(ValidateHeader, ReplyFlagOnRequest_Fails)
{
    auto result = validate_header({ uint32_t(Request::GetFeatures), VERSION | FLAG_REPLY, 0 });

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("reply flag"));
}

TEST(ValidateHeader, PayloadAtLimit_IsValid)
{
    auto result = validate_header({ uint32_t(Request::SetConfig), VERSION, MAX_PAYLOAD });

    EXPECT_TRUE(result.has_value());
}

TEST(ValidateHeader, PayloadOverLimit_Fails)
{
    auto result = validate_header({ uint32_t(Request::SetConfig), VERSION, MAX_PAYLOAD + 1 });

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("SET_CONFIG"));
}

// ---- requests without payload -----------------------------------------------------------------

TEST(DecodeRequest, GetFeatures_Empty_Decodes)
{
    EXPECT_NE(as<req::GetFeatures>(decode(Request::GetFeatures)), nullptr);
}

TEST(DecodeRequest, GetFeatures_WithPayload_Fails)
{
    auto result = decode(Request::GetFeatures, zeros(8));

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("GET_FEATURES"));
}

TEST(DecodeRequest, SetOwner_Empty_Decodes)
{
    EXPECT_NE(as<req::SetOwner>(decode(Request::SetOwner)), nullptr);
}

TEST(DecodeRequest, SetOwner_WithFd_Fails)
{
    auto result = decode(Request::SetOwner, {}, 1);

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("SET_OWNER"));
    EXPECT_THAT(result.error().message, HasSubstr("file descriptors"));
}

TEST(DecodeRequest, ResetOwner_Empty_Decodes)
{
    EXPECT_NE(as<req::ResetOwner>(decode(Request::ResetOwner)), nullptr);
}

TEST(DecodeRequest, GetProtocolFeatures_Empty_Decodes)
{
    EXPECT_NE(as<req::GetProtocolFeatures>(decode(Request::GetProtocolFeatures)), nullptr);
}

TEST(DecodeRequest, GetProtocolFeatures_WithPayload_Fails)
{
    EXPECT_FALSE(decode(Request::GetProtocolFeatures, zeros(4)).has_value());
}

TEST(DecodeRequest, GetQueueNum_Empty_Decodes)
{
    EXPECT_NE(as<req::GetQueueNum>(decode(Request::GetQueueNum)), nullptr);
}

TEST(DecodeRequest, GetQueueNum_WithFd_Fails)
{
    EXPECT_FALSE(decode(Request::GetQueueNum, {}, 1).has_value());
}

TEST(DecodeRequest, ResetDevice_Empty_Decodes)
{
    EXPECT_NE(as<req::ResetDevice>(decode(Request::ResetDevice)), nullptr);
}

TEST(DecodeRequest, ResetDevice_WithPayload_Fails)
{
    EXPECT_FALSE(decode(Request::ResetDevice, zeros(8)).has_value());
}

TEST(DecodeRequest, GetMaxMemSlots_Empty_Decodes)
{
    EXPECT_NE(as<req::GetMaxMemSlots>(decode(Request::GetMaxMemSlots)), nullptr);
}

TEST(DecodeRequest, GetStatus_Empty_Decodes)
{
    EXPECT_NE(as<req::GetStatus>(decode(Request::GetStatus)), nullptr);
}

TEST(DecodeRequest, GetStatus_WithPayload_Fails)
{
    EXPECT_FALSE(decode(Request::GetStatus, zeros(8)).has_value());
}

// ---- u64 payloads -------------------------------------------------------------------------

TEST(DecodeRequest, SetFeatures_U64_DecodesTheBits)
{
    auto result = decode_u64(Request::SetFeatures, 0x0000010140000003);

    auto* request = as<req::SetFeatures>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->features, 0x0000010140000003u);
}

TEST(DecodeRequest, SetFeatures_FourBytes_Fails)
{
    auto result = decode(Request::SetFeatures, zeros(4));

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("SET_FEATURES"));
}

TEST(DecodeRequest, SetFeatures_WithFd_Fails)
{
    EXPECT_FALSE(decode_u64(Request::SetFeatures, 1, 1).has_value());
}

TEST(DecodeRequest, SetProtocolFeatures_U64_DecodesTheBits)
{
    auto result = decode_u64(Request::SetProtocolFeatures, 0x1abcd);

    auto* request = as<req::SetProtocolFeatures>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->features, 0x1abcdu);
}

TEST(DecodeRequest, SetProtocolFeatures_NineBytes_Fails)
{
    EXPECT_FALSE(decode(Request::SetProtocolFeatures, zeros(9)).has_value());
}

TEST(DecodeRequest, SetStatus_ByteValue_Decodes)
{
    auto result = decode_u64(Request::SetStatus, 0xff);

    auto* request = as<req::SetStatus>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->status, 0xff);
}

TEST(DecodeRequest, SetStatus_Above0xff_Fails)
{
    auto result = decode_u64(Request::SetStatus, 0x100);

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("SET_STATUS"));
}

TEST(DecodeRequest, SetStatus_EmptyPayload_Fails)
{
    EXPECT_FALSE(decode(Request::SetStatus).has_value());
}

// ---- vring state and address ----------------------------------------------------------------

TEST(DecodeRequest, SetVringNum_State_DecodesIndexAndNum)
{
    auto result = decode(Request::SetVringNum, bytes_of(VringState { 1, 256 }));

    auto* request = as<req::SetVringNum>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->index, 1u);
    EXPECT_EQ(request->num, 256u);
}

TEST(DecodeRequest, SetVringNum_ShortPayload_Fails)
{
    auto result = decode(Request::SetVringNum, zeros(4));

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("SET_VRING_NUM"));
}

TEST(DecodeRequest, SetVringBase_State_DecodesIndexAndNum)
{
    auto result = decode(Request::SetVringBase, bytes_of(VringState { 0, 77 }));

    auto* request = as<req::SetVringBase>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->index, 0u);
    EXPECT_EQ(request->num, 77u);
}

TEST(DecodeRequest, SetVringBase_LongPayload_Fails)
{
    EXPECT_FALSE(decode(Request::SetVringBase, zeros(16)).has_value());
}

TEST(DecodeRequest, GetVringBase_State_DecodesIndex)
{
    auto result = decode(Request::GetVringBase, bytes_of(VringState { 1, 0 }));

    auto* request = as<req::GetVringBase>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->index, 1u);
}

TEST(DecodeRequest, GetVringBase_Empty_Fails)
{
    EXPECT_FALSE(decode(Request::GetVringBase).has_value());
}

TEST(DecodeRequest, SetVringEnable_One_DecodesEnabled)
{
    auto result = decode(Request::SetVringEnable, bytes_of(VringState { 1, 1 }));

    auto* request = as<req::SetVringEnable>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->index, 1u);
    EXPECT_TRUE(request->enable);
}

TEST(DecodeRequest, SetVringEnable_Zero_DecodesDisabled)
{
    auto result = decode(Request::SetVringEnable, bytes_of(VringState { 0, 0 }));

    auto* request = as<req::SetVringEnable>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_FALSE(request->enable);
}

TEST(DecodeRequest, SetVringEnable_Two_Fails)
{
    auto result = decode(Request::SetVringEnable, bytes_of(VringState { 0, 2 }));

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("SET_VRING_ENABLE"));
}

TEST(DecodeRequest, SetVringAddr_Address_DecodesAllFields)
{
    VringAddr addr { 1, 0, 0x7f0000001000, 0x7f0000003000, 0x7f0000002000, 0 };

    auto result = decode(Request::SetVringAddr, bytes_of(addr));

    auto* request = as<req::SetVringAddr>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->addr.index, 1u);
    EXPECT_EQ(request->addr.descriptor, 0x7f0000001000u);
    EXPECT_EQ(request->addr.used, 0x7f0000003000u);
    EXPECT_EQ(request->addr.available, 0x7f0000002000u);
}

TEST(DecodeRequest, SetVringAddr_ShortPayload_Fails)
{
    EXPECT_FALSE(decode(Request::SetVringAddr, zeros(32)).has_value());
}

TEST(DecodeRequest, SetVringAddr_WithFd_Fails)
{
    EXPECT_FALSE(decode(Request::SetVringAddr, zeros(sizeof(VringAddr)), 1).has_value());
}

// ---- vring kick / call / err --------------------------------------------------------------

TEST(DecodeRequest, SetVringKick_IndexWithFd_Decodes)
{
    auto result = decode_u64(Request::SetVringKick, 1, 1);

    auto* request = as<req::SetVringFd>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->kind, req::VringFdKind::Kick);
    EXPECT_EQ(request->index, 1u);
    EXPECT_TRUE(request->has_fd);
}

TEST(DecodeRequest, SetVringKick_NoFdBitWithoutFd_DecodesWithoutFd)
{
    auto result = decode_u64(Request::SetVringKick, VRING_NOFD_MASK | 1, 0);

    auto* request = as<req::SetVringFd>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->index, 1u);
    EXPECT_FALSE(request->has_fd);
}

TEST(DecodeRequest, SetVringKick_Bit8ClearAndNoFd_Fails)
{
    auto result = decode_u64(Request::SetVringKick, 0, 0);

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("SET_VRING_KICK"));
}

TEST(DecodeRequest, SetVringKick_Bit8SetAndOneFd_Fails)
{
    auto result = decode_u64(Request::SetVringKick, VRING_NOFD_MASK, 1);

    EXPECT_FALSE(result.has_value());
}

TEST(DecodeRequest, SetVringKick_TwoFds_Fails)
{
    EXPECT_FALSE(decode_u64(Request::SetVringKick, 0, 2).has_value());
}

TEST(DecodeRequest, SetVringKick_ReservedBitSet_Fails)
{
    auto result = decode_u64(Request::SetVringKick, uint64_t(1) << 9, 1);

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("reserved"));
}

TEST(DecodeRequest, SetVringKick_HighReservedBitSet_Fails)
{
    EXPECT_FALSE(decode_u64(Request::SetVringKick, (uint64_t(1) << 63) | 1, 1).has_value());
}

TEST(DecodeRequest, SetVringKick_FourBytePayload_Fails)
{
    EXPECT_FALSE(decode(Request::SetVringKick, zeros(4), 1).has_value());
}

TEST(DecodeRequest, SetVringKick_MaxIndex_DecodesIndex255)
{
    auto result = decode_u64(Request::SetVringKick, 0xff, 1);

    auto* request = as<req::SetVringFd>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->index, 0xffu);
}

TEST(DecodeRequest, SetVringCall_IndexWithFd_DecodesCall)
{
    auto result = decode_u64(Request::SetVringCall, 0, 1);

    auto* request = as<req::SetVringFd>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->kind, req::VringFdKind::Call);
    EXPECT_EQ(request->index, 0u);
    EXPECT_TRUE(request->has_fd);
}

TEST(DecodeRequest, SetVringCall_ReservedBitSet_Fails)
{
    EXPECT_FALSE(decode_u64(Request::SetVringCall, 0x200, 1).has_value());
}

TEST(DecodeRequest, SetVringErr_NoFdBit_DecodesErrWithoutFd)
{
    auto result = decode_u64(Request::SetVringErr, VRING_NOFD_MASK, 0);

    auto* request = as<req::SetVringFd>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->kind, req::VringFdKind::Err);
    EXPECT_FALSE(request->has_fd);
}

TEST(DecodeRequest, SetVringErr_Bit8ClearAndNoFd_Fails)
{
    EXPECT_FALSE(decode_u64(Request::SetVringErr, 1, 0).has_value());
}

// ---- memory ---------------------------------------------------------------------------------

TEST(DecodeRequest, SetMemTable_TwoRegions_DecodesBoth)
{
    auto result = decode(Request::SetMemTable, mem_table(2, 2), 2);

    auto* request = as<req::SetMemTable>(result);
    ASSERT_NE(request, nullptr);
    ASSERT_EQ(request->regions.size(), 2u);
    EXPECT_EQ(request->regions[0].guest_phys_addr, 0x100000u);
    EXPECT_EQ(request->regions[0].memory_size, 0x1000u);
    EXPECT_EQ(request->regions[0].userspace_addr, 0x7f0000000000u);
    EXPECT_EQ(request->regions[0].mmap_offset, 0u);
    EXPECT_EQ(request->regions[1].guest_phys_addr, 0x200000u);
    EXPECT_EQ(request->regions[1].memory_size, 0x2000u);
    EXPECT_EQ(request->regions[1].userspace_addr, 0x7f0000100000u);
    EXPECT_EQ(request->regions[1].mmap_offset, 0x2000u);
}

TEST(DecodeRequest, SetMemTable_EightRegions_Decodes)
{
    auto result = decode(Request::SetMemTable, mem_table(8, 8), 8);

    auto* request = as<req::SetMemTable>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->regions.size(), 8u);
}

TEST(DecodeRequest, SetMemTable_ZeroRegions_Fails)
{
    auto result = decode(Request::SetMemTable, mem_table(0, 0), 0);

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("SET_MEM_TABLE"));
}

TEST(DecodeRequest, SetMemTable_NineRegions_Fails)
{
    EXPECT_FALSE(decode(Request::SetMemTable, mem_table(9, 9), 8).has_value());
}

TEST(DecodeRequest, SetMemTable_FewerRegionsInPayloadThanCounted_Fails)
{
    EXPECT_FALSE(decode(Request::SetMemTable, mem_table(2, 1), 2).has_value());
}

TEST(DecodeRequest, SetMemTable_MoreRegionsInPayloadThanCounted_Fails)
{
    EXPECT_FALSE(decode(Request::SetMemTable, mem_table(1, 2), 1).has_value());
}

TEST(DecodeRequest, SetMemTable_FdCountDifferentFromRegions_Fails)
{
    EXPECT_FALSE(decode(Request::SetMemTable, mem_table(2, 2), 1).has_value());
}

TEST(DecodeRequest, SetMemTable_PayloadShorterThanHeader_Fails)
{
    EXPECT_FALSE(decode(Request::SetMemTable, zeros(4), 0).has_value());
}

TEST(DecodeRequest, AddMemReg_RegionWithOneFd_DecodesRegion)
{
    auto result = decode(Request::AddMemReg, bytes_of(single_region), 1);

    auto* request = as<req::AddMemReg>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->region.guest_phys_addr, 0x100000000u);
    EXPECT_EQ(request->region.memory_size, 0x200000u);
    EXPECT_EQ(request->region.userspace_addr, 0x7f1234560000u);
    EXPECT_EQ(request->region.mmap_offset, 0x1000u);
}

TEST(DecodeRequest, AddMemReg_NoFd_Fails)
{
    auto result = decode(Request::AddMemReg, bytes_of(single_region), 0);

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("ADD_MEM_REG"));
}

TEST(DecodeRequest, AddMemReg_TwoFds_Fails)
{
    EXPECT_FALSE(decode(Request::AddMemReg, bytes_of(single_region), 2).has_value());
}

TEST(DecodeRequest, AddMemReg_BareRegionWithoutPadding_Fails)
{
    EXPECT_FALSE(decode(Request::AddMemReg, bytes_of(single_region.region), 1).has_value());
}

TEST(DecodeRequest, RemMemReg_NoFd_DecodesRegion)
{
    auto result = decode(Request::RemMemReg, bytes_of(single_region), 0);

    auto* request = as<req::RemMemReg>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->region.guest_phys_addr, 0x100000000u);
    EXPECT_EQ(request->region.memory_size, 0x200000u);
}

TEST(DecodeRequest, RemMemReg_OneFd_IsAccepted)
{
    auto result = decode(Request::RemMemReg, bytes_of(single_region), 1);

    EXPECT_NE(as<req::RemMemReg>(result), nullptr);
}

TEST(DecodeRequest, RemMemReg_TwoFds_Fails)
{
    EXPECT_FALSE(decode(Request::RemMemReg, bytes_of(single_region), 2).has_value());
}

TEST(DecodeRequest, RemMemReg_ShortPayload_Fails)
{
    EXPECT_FALSE(decode(Request::RemMemReg, zeros(32), 0).has_value());
}

// ---- fd-only requests -----------------------------------------------------------------------

TEST(DecodeRequest, SetBackendReqFd_OneFd_Decodes)
{
    EXPECT_NE(as<req::SetBackendReqFd>(decode(Request::SetBackendReqFd, {}, 1)), nullptr);
}

TEST(DecodeRequest, SetBackendReqFd_NoFd_Fails)
{
    EXPECT_FALSE(decode(Request::SetBackendReqFd, {}, 0).has_value());
}

TEST(DecodeRequest, GpuSetSocket_OneFd_Decodes)
{
    EXPECT_NE(as<req::GpuSetSocket>(decode(Request::GpuSetSocket, {}, 1)), nullptr);
}

TEST(DecodeRequest, GpuSetSocket_NoFd_Fails)
{
    auto result = decode(Request::GpuSetSocket, {}, 0);

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("GPU_SET_SOCKET"));
}

TEST(DecodeRequest, GpuSetSocket_WithPayload_Fails)
{
    EXPECT_FALSE(decode(Request::GpuSetSocket, zeros(8), 1).has_value());
}

// ---- config ---------------------------------------------------------------------------------

TEST(DecodeRequest, GetConfig_HeaderPlusBuffer_DecodesFields)
{
    auto result = decode(Request::GetConfig, config_payload(4, 12, 1, 12));

    auto* request = as<req::GetConfig>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->offset, 4u);
    EXPECT_EQ(request->size, 12u);
    EXPECT_EQ(request->flags, 1u);
}

TEST(DecodeRequest, GetConfig_MaxSize_Decodes)
{
    auto result = decode(
        Request::GetConfig, config_payload(0, MAX_CONFIG_SIZE, 0, MAX_CONFIG_SIZE));

    EXPECT_NE(as<req::GetConfig>(result), nullptr);
}

TEST(DecodeRequest, GetConfig_SizeOver256_Fails)
{
    auto result = decode(
        Request::GetConfig, config_payload(0, MAX_CONFIG_SIZE + 1, 0, MAX_CONFIG_SIZE + 1));

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("GET_CONFIG"));
}

TEST(DecodeRequest, GetConfig_PayloadNotMatchingSize_Fails)
{
    EXPECT_FALSE(decode(Request::GetConfig, config_payload(0, 16, 0, 8)).has_value());
}

TEST(DecodeRequest, GetConfig_ShorterThanConfigHeader_Fails)
{
    EXPECT_FALSE(decode(Request::GetConfig, zeros(8)).has_value());
}

TEST(DecodeRequest, GetConfig_WithFd_Fails)
{
    EXPECT_FALSE(decode(Request::GetConfig, config_payload(0, 4, 0, 4), 1).has_value());
}

TEST(DecodeRequest, SetConfig_HeaderPlusData_DecodesData)
{
    auto result = decode(Request::SetConfig, config_payload(4, 4, 0, 4));

    auto* request = as<req::SetConfig>(result);
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->offset, 4u);
    EXPECT_EQ(request->flags, 0u);
    EXPECT_EQ(request->data,
        (std::vector<std::byte> { std::byte(1), std::byte(2), std::byte(3), std::byte(4) }));
}

TEST(DecodeRequest, SetConfig_DataShorterThanSize_Fails)
{
    EXPECT_FALSE(decode(Request::SetConfig, config_payload(0, 8, 0, 4)).has_value());
}

TEST(DecodeRequest, SetConfig_SizeOver256_Fails)
{
    EXPECT_FALSE(decode(Request::SetConfig, config_payload(0, 300, 0, 300)).has_value());
}

// ---- unsupported and unknown ----------------------------------------------------------------

TEST(DecodeRequest, SetLogBase_IsNotSupported)
{
    auto result = decode(Request::SetLogBase, zeros(16), 1);

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("SET_LOG_BASE"));
    EXPECT_THAT(result.error().message, HasSubstr("not supported"));
}

TEST(DecodeRequest, GetInflightFd_IsNotSupported)
{
    auto result = decode(Request::GetInflightFd, zeros(24), 0);

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("GET_INFLIGHT_FD"));
}

TEST(DecodeRequest, VringKick_IsNotSupported)
{
    auto result = decode(Request::VringKick, bytes_of(VringState { 0, 0 }), 0);

    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, HasSubstr("VRING_KICK"));
}

TEST(DecodeRequest, OtherUnofferedRequests_AreNotSupported)
{
    for (auto request : { Request::SetLogFd, Request::SendRarp, Request::NetSetMtu,
             Request::IotlbMsg, Request::SetVringEndian, Request::SetInflightFd })
        EXPECT_FALSE(decode(request, zeros(8), 0).has_value()) << request_name(uint32_t(request));
}

TEST(DecodeRequest, UnknownRequestId_Fails)
{
    for (uint32_t id : { 0u, 26u, 30u, 41u, 1000u, 0xffffffffu }) {
        auto result = decode_request(Header { id, VERSION, 0 }, {}, 0);

        ASSERT_FALSE(result.has_value()) << id;
        EXPECT_THAT(result.error().message, HasSubstr("unknown request")) << id;
    }
}

TEST(RequestName, KnownAndUnknownIds_AreNamed)
{
    EXPECT_EQ(request_name(uint32_t(Request::GetFeatures)), "GET_FEATURES");
    EXPECT_EQ(request_name(uint32_t(Request::GetStatus)), "GET_STATUS");
    EXPECT_EQ(request_name(1000), "UNKNOWN");
}

// ---- mandatory replies ----------------------------------------------------------------------

TEST(HasMandatoryReply, GetRequests_Need)
{
    for (auto request : { Request::GetFeatures, Request::GetProtocolFeatures, Request::GetVringBase,
             Request::GetConfig, Request::GetQueueNum, Request::GetMaxMemSlots, Request::GetStatus,
             Request::GetInflightFd })
        EXPECT_TRUE(has_mandatory_reply(uint32_t(request))) << request_name(uint32_t(request));
}

TEST(HasMandatoryReply, SetRequestsAndUnknown_DoNotNeed)
{
    for (auto request :
        { Request::SetFeatures, Request::SetOwner, Request::SetMemTable, Request::SetVringKick,
            Request::SetConfig, Request::AddMemReg, Request::SetStatus, Request::ResetDevice })
        EXPECT_FALSE(has_mandatory_reply(uint32_t(request))) << request_name(uint32_t(request));
    EXPECT_FALSE(has_mandatory_reply(1000));
}

} // namespace
} // namespace vgpu::vhost
