// One handler per control command (docs/control.md).
#include <cctype>
#include <string_view>
#include <utility>

#include "app_version.h"
#include "base/log.h"
#include "base/verify.h"
#include "control/base64.h"
#include "control/capabilities.h"
#include "control/control_server.h"
#include "display/capture/frame.h"
#include "display/capture/image.h"
#include "export/describe.h"
#include "virtio_gpu/edid.h"

namespace vgpu::control {

namespace {

CommandError invalid(std::string desc)
{
    return CommandError { "InvalidParameter", std::move(desc) };
}
CommandError inactive(std::string desc)
{
    return CommandError { "DeviceNotActive", std::move(desc) };
}
CommandError busy(std::string desc) { return CommandError { "Busy", std::move(desc) }; }

Result<uint32_t, CommandError> uint_argument(
    const json& arguments, const char* name, uint32_t max, uint32_t min = 0)
{
    if (!arguments.contains(name))
        return invalid(fmt::format("missing argument '{}'", name));
    const auto& value = arguments[name];
    if (!value.is_number_unsigned() || value.get<uint64_t>() < min || value.get<uint64_t>() > max)
        return invalid(fmt::format("'{}' must be an integer in {}..{}", name, min, max));
    return uint32_t(value.get<uint64_t>());
}

Result<std::string, CommandError> string_argument(const json& arguments, const char* name)
{
    if (!arguments.contains(name))
        return invalid(fmt::format("missing argument '{}'", name));
    if (!arguments[name].is_string())
        return invalid(fmt::format("'{}' must be a string", name));
    return arguments[name].get<std::string>();
}

// Output modes the device accepts (Device::add_output): a size outside them is a bad argument
// (InvalidParameter), not a device state.
constexpr uint32_t min_mode = 16;
constexpr uint32_t max_mode = 4095;

struct Mode {
    uint32_t width;
    uint32_t height;
};

// `width` and `height` of a mode the guest can be told about: like --output, also one our EDID
// can describe, or the guest's GET_EDID for the output would fail.
Result<Mode, CommandError> mode_arguments(const json& arguments)
{
    uint32_t width = TRY(uint_argument(arguments, "width", max_mode, min_mode));
    uint32_t height = TRY(uint_argument(arguments, "height", max_mode, min_mode));
    if (auto edid = virtio_gpu::build_edid({ .width = width, .height = height }); !edid)
        return invalid(fmt::format("{}x{}: {}", width, height, edid.error().message));
    return Mode { width, height };
}

#define TRY_CMD(expression) TRY(expression)

} // namespace

Result<uint32_t, CommandError> ControlServer::output_argument(const json& arguments) const
{
    return uint_argument(arguments, "output", m_device.scanout_limit() - 1);
}

// An output slot of ours (hotplug and resize), not just any scanout QEMU's display may have.
Result<uint32_t, CommandError> ControlServer::slot_argument(const json& arguments) const
{
    return uint_argument(arguments, "output", uint32_t(m_device.outputs().size()) - 1);
}

CommandResult ControlServer::cmd_qmp_capabilities(const json&, Client&) { return json::object(); }

CommandResult ControlServer::cmd_query_version(const json&, Client&)
{
    return json { { "major", VGPU_VERSION_MAJOR }, { "minor", VGPU_VERSION_MINOR },
        { "micro", VGPU_VERSION_PATCH }, { "package", "vgpu-display " VGPU_VERSION } };
}

CommandResult ControlServer::cmd_query_capabilities(const json&, Client&)
{
    json commands = json::array();
    for (const auto& [name, handler] : handler_table())
        commands.push_back(name);
    return json { { "type", "gpu" }, { "features", json::array() }, { "commands", commands },
        { "events", json::array({ "FLIP", "MODE_CHANGE", "CRC" }) },
        { "crc",
            { { "algorithm", "crc32c" }, { "layout", "0x00RRGGBB little-endian" },
                { "ring", display::capture::CrcCapture::ring_size } } },
        { "screendump-formats", json::array({ "png", "ppm" }) },
        { "outputs", m_device.scanout_limit() },
        { "vgpu-display",
            device_capabilities(m_device.options().blob,
                unsigned(m_device.options().release_timeout.count()),
                m_device.options().dmabuf ? m_device.options().dmabuf->name() : nullptr,
                m_device.options().outputs_from_backend, m_device.options().export_guest_memory) },
        { "blob-enabled", m_device.blob_enabled() } };
}

CommandResult ControlServer::cmd_query_outputs(const json&, Client&)
{
    json list = json::array();
    const auto& own = m_device.outputs();
    for (uint32_t i = 0; i < m_device.scanout_limit(); ++i) {
        const auto& output = m_display.output(i);
        // Our own output slots, and scanouts beyond them that the guest shows something on
        // (QEMU's display owns up to 16).
        if (i >= own.size() && !output.enabled())
            continue;
        // Whether our monitor is plugged in: null where we do not say (QEMU's UI owns the
        // outputs, or a scanout of QEMU's beyond our slots).
        bool ours = i < own.size() && !m_device.qemu_owns_outputs();
        json entry = { { "output", i }, { "enabled", output.enabled() },
            { "width", output.width() }, { "height", output.height() },
            { "frames", output.generation }, { "flips", output.flips },
            { "crc-capture", m_crc.active(i) },
            { "plugged", ours ? json(own[i].enabled) : json(nullptr) },
            // The monitor the guest is told about (GET_DISPLAY_INFO, EDID), when it is ours.
            { "monitor",
                ours && own[i].enabled
                    ? json { { "width", own[i].width }, { "height", own[i].height } }
                    : json(nullptr) } };
        if (auto* qemu = m_display.qemu(); qemu && qemu->open())
            entry["qemu-path"] = qemu->path(i);
        if (output.source) {
            entry["resource"] = output.source->resource.value();
            entry["format"] = output.source->format.name;
            entry["x"] = output.source->rect.x;
            entry["y"] = output.source->rect.y;
        } else {
            entry["resource"] = nullptr;
            entry["format"] = nullptr;
        }
        list.push_back(entry);
    }
    return list;
}

CommandResult ControlServer::cmd_query_resources(const json&, Client&)
{
    const auto& resources = m_device.resources();
    return json { { "count", resources.count() }, { "bytes", resources.host_bytes() },
        { "max-bytes", resources.max_host_bytes() }, { "max-count", resources.max_resources() },
        { "backing-entries", resources.backing_entries() }, { "mappings", resources.mappings() },
        { "max-mappings", resources.max_mappings() } };
}

CommandResult ControlServer::cmd_query_stats(const json&, Client&)
{
    const auto& s = m_device.stats();
    json buckets = json::array();
    for (size_t i = 0; i < s.flush_latency.buckets; ++i) {
        json le = i + 1 == s.flush_latency.buckets ? json("inf") : json(uint64_t(1) << i);
        buckets.push_back({ { "le", le }, { "count", s.flush_latency.count[i] } });
    }
    json display_stats = { { "flips", m_display.stats().flips },
        { "visible-changes", m_display.stats().damage_events },
        { "cursor-updates", m_display.stats().cursor_updates },
        { "cursor-moves", m_display.stats().cursor_moves } };
    if (auto* qemu = const_cast<display::Display&>(m_display).qemu()) {
        const auto& q = qemu->stats();
        display_stats["qemu"] = { { "scanouts", q.scanouts }, { "updates", q.updates },
            { "update-bytes", q.update_bytes }, { "direct-updates", q.direct_updates },
            { "cursor-updates", q.cursor_updates }, { "cursor-moves", q.cursor_moves },
            { "queries", q.queries }, { "query-timeouts", q.query_timeouts },
            { "coalesced", q.coalesced }, { "dmabuf-scanouts", q.dmabuf_scanouts },
            { "dmabuf-updates", q.dmabuf_updates }, { "dmabuf-replies", q.dmabuf_replies },
            { "dmabuf-let-go", q.dmabuf_let_go } };
    }
    json export_stats = nullptr;
    if (m_export) {
        const auto& e = m_export->stats();
        export_stats = { { "consumers", m_export->consumers() },
            { "leases", m_export->leases().size() }, { "accepted", e.consumers_accepted },
            { "refused", e.consumers_refused }, { "bad-messages", e.bad_messages },
            { "evicted", e.evicted }, { "leases-granted", e.leases_granted },
            { "flips-sent", e.flips_sent }, { "flips-coalesced", e.flips_coalesced },
            { "buffers-sent", e.buffers_sent }, { "bytes-copied", e.bytes_copied },
            { "share-failures", e.share_failures },
            { "cursor-moves-coalesced", e.cursor_moves_coalesced }, { "holds", e.holds },
            { "ack-timeouts", e.ack_timeouts }, { "held-overwritten", e.held_overwritten },
            { "no-ack-revoked", e.no_ack_revoked } };
    }
    return json {
        { "commands", s.control_commands },
        { "cursor-commands", s.cursor_commands },
        { "errors", s.error_responses },
        { "cursor-errors", s.cursor_errors },
        { "flips", s.scanout_changes },
        { "flushes", s.flushes },
        { "transfers", s.transfers },
        { "transfer-waits", s.transfer_waits },
        { "transfer-wait-timeouts", s.transfer_wait_timeouts },
        { "bytes-copied", s.bytes_transferred + s.bytes_gathered },
        { "bytes-transferred", s.bytes_transferred },
        { "blob",
            { { "created", s.blobs_created }, { "flushes", s.blob_flushes },
                { "bytes-gathered", s.bytes_gathered }, { "release-waits", s.release_waits },
                { "release-timeouts", s.release_timeouts }, { "view-rebuilds", s.view_rebuilds },
                { "dmabufs-exported", s.dmabufs_exported },
                { "dmabuf-failures", s.dmabuf_failures },
                { "guest-plane-failures", s.guest_plane_failures },
                { "views",
                    { { "span", m_device.resources().view_counts().span },
                        { "mapped", m_device.resources().view_counts().mapped },
                        { "gathered", m_device.resources().view_counts().gathered } } } } },
        { "cursor-updates", s.cursor_updates },
        { "cursor-moves", s.cursor_moves },
        { "crc-entries", m_crc.entries_total() },
        { "crc-jobs", m_crc.stats().jobs },
        { "crc-inline-jobs", m_crc.stats().inline_jobs },
        { "crc-overwrite-waits", m_crc.stats().overwrite_waits },
        { "display", display_stats },
        { "export", export_stats },
        { "flip-latency-us",
            { { "buckets", buckets }, { "count", s.flush_latency.total },
                { "sum", s.flush_latency.sum_us } } },
        { "control",
            { { "clients", m_clients.size() }, { "requests", m_stats.requests },
                { "errors", m_stats.errors }, { "events-sent", m_stats.events_sent },
                { "events-dropped", m_stats.events_dropped },
                { "accept-errors", m_stats.accept_errors },
                { "screendumps-offloaded", m_stats.offloaded },
                { "screendumps-busy", m_stats.busy },
                { "listen-pauses", m_stats.listen_pauses } } },
    };
}

namespace {

// Off the loop: the snapshot becomes an image, encoded, written or base64'd, and the whole reply
// line serialised (an inline 4K PPM is 67 MB of base64: not something to dump on the loop).
std::pair<std::string, bool> screendump_reply(const display::capture::Snapshot& snapshot,
    const std::string& format, const std::optional<std::string>& filename, const json& request_id)
{
    auto fail = [&](std::string desc) {
        json reply = { { "error", { { "class", "GenericError" }, { "desc", std::move(desc) } } } };
        if (!request_id.is_null())
            reply["id"] = request_id;
        return std::pair { reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
            true };
    };
    auto image = display::capture::to_image(snapshot);
    auto encoded = format == "png" ? display::capture::encode_png(image)
                                   : display::capture::encode_ppm(image);
    if (!encoded)
        return fail(encoded.error().message);
    json result = { { "width", image.width }, { "height", image.height }, { "format", format } };
    if (filename) {
        if (auto r = display::capture::write_file(*filename, *encoded); !r)
            return fail(r.error().message);
        result["filename"] = *filename;
    } else {
        result["data"] = base64_encode(*encoded);
    }
    json reply = { { "return", std::move(result) } };
    if (!request_id.is_null())
        reply["id"] = request_id;
    return { reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", false };
}

} // namespace

CommandResult ControlServer::cmd_screendump(const json& arguments, Client& client)
{
    uint32_t output = TRY_CMD(output_argument(arguments));
    std::optional<std::string> filename;
    if (arguments.contains("filename"))
        filename = TRY_CMD(string_argument(arguments, "filename"));
    std::string format;
    if (arguments.contains("format")) {
        format = TRY_CMD(string_argument(arguments, "format"));
    } else if (filename) {
        auto dot = filename->rfind('.');
        format = dot == std::string::npos ? "png" : filename->substr(dot + 1);
        for (auto& c : format)
            c = char(std::tolower(static_cast<unsigned char>(c)));
    } else {
        format = "png";
    }
    if (format != "png" && format != "ppm")
        return invalid(fmt::format("format '{}' is not png or ppm", format));
    // Only the copy of the visible rows happens here, on the loop; a bounded number of them
    // are in flight, so a flood of screendumps costs the loop a copy per encode at most.
    if (m_offload->in_flight() >= m_offload->capacity()) {
        ++m_stats.busy;
        return busy(
            fmt::format("{} screendumps are in progress; try again", m_offload->capacity()));
    }
    auto snapshot = display::capture::take_snapshot(m_display.output(output));
    if (!snapshot)
        return inactive(snapshot.error().message);
    bool queued = m_offload->submit(
        [this, id = client.id, request_id = client.request_id, snapshot = snapshot.release_value(),
            format, filename]() -> Offload::Continuation {
            auto [line, error] = screendump_reply(snapshot, format, filename, request_id);
            return [this, id, line = std::move(line), error = error]() {
                ++m_stats.offloaded;
                finish_later(id, line, error);
            };
        });
    VGPU_VERIFY(queued); // only this thread submits, and there was room
    client.busy = true;
    return Later {};
}

json ControlServer::crc_entries_json(uint32_t output)
{
    auto drained = m_crc.read(output);
    json entries = json::array();
    std::string lines;
    if (drained.overflow)
        lines += fmt::format("overflow {}\n", drained.overflow);
    for (const auto& e : drained.entries) {
        auto line = display::capture::drm_crc_line(e.frame, e.crc);
        entries.push_back({ { "frame", e.frame }, { "crc", e.crc }, { "line", line } });
        lines += line + "\n";
    }
    return json { { "entries", entries }, { "lines", lines }, { "overflow", drained.overflow } };
}

CommandResult ControlServer::cmd_crc_start(const json& arguments, Client&)
{
    uint32_t output = TRY_CMD(output_argument(arguments));
    m_crc.start(output);
    return json::object();
}

CommandResult ControlServer::cmd_crc_read(const json& arguments, Client&)
{
    uint32_t output = TRY_CMD(output_argument(arguments));
    if (!m_crc.active(output))
        return inactive(fmt::format("CRC capture is not on for output {}", output));
    return crc_entries_json(output);
}

CommandResult ControlServer::cmd_crc_stop(const json& arguments, Client&)
{
    uint32_t output = TRY_CMD(output_argument(arguments));
    if (!m_crc.active(output))
        return inactive(fmt::format("CRC capture is not on for output {}", output));
    auto entries = crc_entries_json(output);
    m_crc.stop(output);
    return entries;
}

CommandResult ControlServer::cmd_subscribe(const json& arguments, Client& client)
{
    if (!arguments.contains("events") || !arguments["events"].is_array())
        return invalid("'events' must be a list of event names");
    std::set<std::string> wanted;
    for (const auto& e : arguments["events"]) {
        if (!e.is_string() || (e != "FLIP" && e != "MODE_CHANGE" && e != "CRC"))
            return invalid(fmt::format("unknown event {}", e.dump()));
        wanted.insert(e.get<std::string>());
    }
    client.events = std::move(wanted);
    return json { { "events", client.events } };
}

CommandResult ControlServer::cmd_output_add(const json& arguments, Client&)
{
    Mode mode = TRY_CMD(mode_arguments(arguments));
    auto index = m_device.add_output(mode.width, mode.height);
    if (!index)
        return inactive(index.error().message);
    return json { { "output", *index } };
}

CommandResult ControlServer::cmd_output_remove(const json& arguments, Client&)
{
    uint32_t output = TRY_CMD(slot_argument(arguments));
    if (auto r = m_device.remove_output(output); !r)
        return inactive(r.error().message);
    return json::object();
}

CommandResult ControlServer::cmd_output_resize(const json& arguments, Client&)
{
    uint32_t output = TRY_CMD(slot_argument(arguments));
    Mode mode = TRY_CMD(mode_arguments(arguments));
    if (auto r = m_device.resize_output(output, mode.width, mode.height); !r)
        return inactive(r.error().message);
    return json::object();
}

CommandResult ControlServer::cmd_lease_list(const json&, Client&)
{
    if (!m_export)
        return inactive("no export socket (start the backend with --export PATH)");
    json list = json::array();
    for (const auto& l : m_export->leases())
        list.push_back({ { "lease", l.lease }, { "output", l.output },
            { "kind", l.kind == exporting::LeaseKind::Exclusive ? "exclusive" : "shared" },
            { "plane-type", exporting::plane_type_names(l.plane_type) }, { "consumer", l.consumer },
            { "pid", l.pid }, { "generation-acked", l.acked }, { "queued", l.queued } });
    return list;
}

CommandResult ControlServer::cmd_lease_revoke(const json& arguments, Client&)
{
    if (!m_export)
        return inactive("no export socket (start the backend with --export PATH)");
    uint32_t lease = TRY_CMD(uint_argument(arguments, "lease", UINT32_MAX));
    if (auto r = m_export->revoke(lease); !r)
        return invalid(r.error().message);
    return json::object();
}

} // namespace vgpu::control
