// Shared pieces of the integration tests: the backend under test runs as a real process and the
// harness drives it as QEMU would.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "harness/backend_process.h"
#include "harness/frontend.h"
#include "virtio_gpu/wire.h"

namespace vgpu::integration {

inline std::vector<std::byte> ctrl_header(
    virtio_gpu::CtrlType type, uint32_t flags = 0, uint64_t fence = 0, uint32_t ctx = 0)
{
    virtio_gpu::CtrlHdr h {};
    h.type = uint32_t(type);
    h.flags = flags;
    h.fence_id = fence;
    h.ctx_id = ctx;
    auto bytes = std::as_bytes(std::span(&h, 1));
    return { bytes.begin(), bytes.end() };
}

inline virtio_gpu::CtrlHdr parse_header(const std::vector<std::byte>& response)
{
    virtio_gpu::CtrlHdr h {};
    EXPECT_GE(response.size(), sizeof(h));
    std::memcpy(&h, response.data(), std::min(response.size(), sizeof(h)));
    return h;
}

// A GET_DISPLAY_INFO made available on the control queue and kicked, without waiting for it;
// returns the GPA its response goes to.
inline uint64_t submit_get_display_info(harness::QemuSession& session)
{
    auto& ram = session.ram();
    uint64_t request = ram.alloc(64);
    ram.write(request, ctrl_header(virtio_gpu::CtrlType::GetDisplayInfo));
    uint64_t response = ram.alloc(sizeof(virtio_gpu::RespDisplayInfo));
    session.control().add({ { request, 24, false },
        { response, uint32_t(sizeof(virtio_gpu::RespDisplayInfo)), true } });
    session.control().notify_kick();
    return response;
}

// A fenced GET_DISPLAY_INFO round trip that must complete with OK_DISPLAY_INFO.
inline void expect_control_round_trip(harness::QemuSession& session, uint64_t fence = 7)
{
    auto response = session.control_round_trip(
        ctrl_header(virtio_gpu::CtrlType::GetDisplayInfo, virtio_gpu::FLAG_FENCE, fence),
        sizeof(virtio_gpu::RespDisplayInfo));
    ASSERT_TRUE(response.has_value()) << "no used entry on the control queue";
    ASSERT_EQ(response->size(), sizeof(virtio_gpu::RespDisplayInfo));
    auto h = parse_header(*response);
    EXPECT_EQ(h.type, uint32_t(virtio_gpu::CtrlType::OkDisplayInfo));
    EXPECT_EQ(h.flags & virtio_gpu::FLAG_FENCE, virtio_gpu::FLAG_FENCE);
    EXPECT_EQ(h.fence_id, fence);
}

inline void expect_cursor_round_trip(harness::QemuSession& session)
{
    std::vector<std::byte> cmd(56);
    auto h = ctrl_header(virtio_gpu::CtrlType::MoveCursor);
    std::memcpy(cmd.data(), h.data(), h.size());
    auto used = session.cursor_round_trip(cmd);
    ASSERT_TRUE(used.has_value()) << "no used entry on the cursor queue";
    EXPECT_EQ(used->length, 0u);
}

} // namespace vgpu::integration
