// GET_DISPLAY_INFO, GET_EDID, GET_CAPSET_INFO, GET_CAPSET and the commands we do not implement.
// With QEMU's display socket and --outputs-from qemu, display info and EDID are QEMU's (its UI
// owns the monitors): the request is forwarded and the control queue waits for the answer.
// Without the socket, with --outputs-from backend, or when QEMU does not answer in time, our own
// outputs answer.
#include <cstring>

#include "base/log.h"
#include "virtio_gpu/device.h"
#include "virtio_gpu/edid.h"

namespace vgpu::virtio_gpu {

RespDisplayInfo Device::own_display_info() const
{
    RespDisplayInfo info {};
    info.hdr.type = uint32_t(CtrlType::OkDisplayInfo);
    for (size_t i = 0; i < m_options.outputs.size(); ++i) {
        if (!m_options.outputs[i].enabled)
            continue;
        info.pmodes[i].r = Rect { 0, 0, m_options.outputs[i].width, m_options.outputs[i].height };
        info.pmodes[i].enabled = 1;
    }
    return info;
}

GpuResult<RespEdid> Device::own_edid(uint32_t scanout) const
{
    if (scanout >= scanout_limit())
        return GpuError::InvalidParameter;
    // An unplugged output has no monitor to describe; nor has a scanout of QEMU's beyond our
    // outputs (its max_outputs is more than our --outputs).
    if (scanout >= m_options.outputs.size() || !m_options.outputs[scanout].enabled)
        return GpuError::Unspec;
    const auto& mode = m_options.outputs[scanout];
    auto edid = build_edid(
        EdidInfo { .width = mode.width, .height = mode.height, .serial = scanout + 1 });
    if (!edid) {
        VGPU_LOG_GUEST(Warn, "GET_EDID {}: {}", scanout, edid.error().message);
        return GpuError::Unspec;
    }
    RespEdid response {};
    response.hdr.type = uint32_t(CtrlType::OkEdid);
    response.size = uint32_t(edid->size());
    std::memcpy(response.edid, edid->data(), std::min(edid->size(), sizeof(response.edid)));
    return response;
}

std::vector<std::byte> Device::display_info_answer(std::optional<RespDisplayInfo> answer)
{
    if (!answer) {
        ++m_stats.forwarded_timeouts;
        answer = own_display_info();
    }
    answer->hdr.type = uint32_t(CtrlType::OkDisplayInfo);
    return std::get<std::vector<std::byte>>(with_payload(*answer));
}

std::vector<std::byte> Device::edid_answer(uint32_t scanout, std::optional<RespEdid> answer)
{
    if (!answer) {
        ++m_stats.forwarded_timeouts;
        auto own = own_edid(scanout);
        if (own)
            answer = *own;
    }
    if (!answer) {
        RespEdid error {};
        error.hdr.type = uint32_t(CtrlType::ErrUnspec);
        auto bytes = std::as_bytes(std::span(&error.hdr, 1));
        return std::vector<std::byte>(bytes.begin(), bytes.end());
    }
    answer->hdr.type = uint32_t(CtrlType::OkEdid);
    return std::get<std::vector<std::byte>>(with_payload(*answer));
}

Device::HandlerResult Device::handle(const cmd::GetDisplayInfo&)
{
    if (!qemu_owns_outputs())
        return with_payload(own_display_info());
    ++m_stats.forwarded_queries;
    uint64_t deferral = defer([this] { return Response(display_info_answer(std::nullopt)); });
    m_display->query_display_info([this, deferral](std::optional<RespDisplayInfo> answer) {
        if (deferral_current(deferral))
            complete_deferred(deferral, Response(display_info_answer(answer)));
    });
    return Response(Deferred {});
}

Device::HandlerResult Device::handle(const cmd::GetEdid& c)
{
    if (c.scanout >= scanout_limit())
        return GpuError::InvalidParameter;
    if (!qemu_owns_outputs()) {
        auto edid = own_edid(c.scanout);
        if (!edid)
            return edid.release_error();
        return with_payload(*edid);
    }
    ++m_stats.forwarded_queries;
    uint32_t scanout = c.scanout;
    uint64_t deferral = defer(
        [this, scanout] { return Response(edid_answer(scanout, std::nullopt)); });
    m_display->query_edid(scanout, [this, deferral, scanout](std::optional<RespEdid> answer) {
        if (deferral_current(deferral))
            complete_deferred(deferral, Response(edid_answer(scanout, answer)));
    });
    return Response(Deferred {});
}

// num_capsets is 0: no index is valid. The spec names no error; QEMU's 2D device does not
// know the capset commands without virgl and answers ERR_UNSPEC, and so do we.
Device::HandlerResult Device::handle(const cmd::GetCapsetInfo& c)
{
    VGPU_LOG_GUEST(Debug, "GET_CAPSET_INFO {}: there are no capsets", c.capset_index);
    return GpuError::Unspec;
}

Device::HandlerResult Device::handle(const cmd::GetCapset& c)
{
    VGPU_LOG_GUEST(Debug, "GET_CAPSET {} v{}: there are no capsets", c.capset_id, c.capset_version);
    return GpuError::Unspec;
}

Device::HandlerResult Device::handle(const cmd::Unsupported& c)
{
    VGPU_LOG_GUEST(Debug, "{} ({:#x}): not supported", command_name(c.type), c.type);
    // QEMU answers the blob commands with ERR_INVALID_PARAMETER when blobs are not enabled,
    // everything else it does not know with ERR_UNSPEC.
    if (c.type == uint32_t(CtrlType::ResourceCreateBlob)
        || c.type == uint32_t(CtrlType::SetScanoutBlob))
        return GpuError::InvalidParameter;
    return GpuError::Unspec;
}

} // namespace vgpu::virtio_gpu
