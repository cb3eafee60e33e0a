#include "app/tools/ctl_export.h"

#include <poll.h>

#include <cerrno>
#include <cstring>

#include "export/client.h"
#include "export/describe.h"

namespace vgpu::ctl {

namespace ex = vgpu::exporting;

namespace {

CtlResult<ex::Client> connect(const std::string& path, std::chrono::milliseconds timeout)
{
    if (path.empty())
        return failure(Exit::Usage, "no export socket: give --export PATH or set VGPU_EXPORT");
    auto client = ex::Client::connect(path, "vgpu-ctl", timeout);
    if (!client)
        return failure(Exit::Connection, "{}", client.error().message);
    return std::move(client.value());
}

json plane_type_json(uint32_t bits)
{
    json out = json::array();
    for (const auto& name : ex::plane_type_list(bits))
        out.push_back(name);
    return out;
}

json rect_json(const ex::Rect32& r) { return { r.x, r.y, r.width, r.height }; }

// A record as JSON: {"record": "flip", ...the fields...}.
json record_json(const ex::Message& m)
{
    if (auto f = m.as<ex::Flip>()) {
        json damage = json::array();
        for (uint32_t i = 0; i < std::min(f->rects, ex::FLIP_RECTS); ++i)
            damage.push_back(rect_json(f->damage[i]));
        return { { "record", "flip" }, { "lease", f->lease }, { "generation", f->generation },
            { "covers", f->covers }, { "buffer", f->buffer }, { "source", rect_json(f->source) },
            { "damage", damage } };
    }
    if (auto c = m.as<ex::Crc>())
        return { { "record", "crc" }, { "generation", c->generation }, { "crc", c->crc } };
    if (auto b = m.as<ex::Buffer>())
        return { { "record", "buffer" }, { "buffer", b->buffer }, { "width", b->width },
            { "height", b->height }, { "fourcc", ex::fourcc_name(b->fourcc) },
            { "modifier", b->modifier }, { "stride", b->stride }, { "offset", b->offset },
            { "size", b->size }, { "plane-type", plane_type_json(b->plane_type) } };
    if (auto g = m.as<ex::BufferGone>())
        return { { "record", "buffer-gone" }, { "buffer", g->buffer } };
    if (auto mode = m.as<ex::Mode>())
        return { { "record", "mode" }, { "enabled", mode->enabled != 0 }, { "width", mode->width },
            { "height", mode->height } };
    if (auto c = m.as<ex::Cursor>())
        return { { "record", "cursor" }, { "buffer", c->buffer }, { "x", c->x }, { "y", c->y },
            { "hot-x", c->hot_x }, { "hot-y", c->hot_y }, { "moved-only", c->moved_only != 0 } };
    // REVOKED and anything else: the line's words.
    return { { "record", ex::record_line(m) } };
}

// Waits for the next record, or for the interrupt fd: nullopt when interrupted.
CtlResult<std::optional<ex::Message>> next_record(ex::Client& client, int interrupt_fd)
{
    for (;;) {
        auto message = client.next(std::chrono::milliseconds(0));
        if (!message)
            return failure(Exit::Connection, "{}", message.error().message);
        if (*message)
            return std::move(*message);
        pollfd p[2] = { { client.socket(), POLLIN, 0 }, { interrupt_fd, POLLIN, 0 } };
        int n = ::poll(p, interrupt_fd >= 0 ? 2 : 1, -1);
        if (n < 0 && errno != EINTR)
            return failure(Exit::Failed, "poll: {}", std::strerror(errno));
        if (interrupt_fd >= 0 && (p[1].revents & POLLIN))
            return std::optional<ex::Message>();
    }
}

} // namespace

CtlResult<void> export_planes(const std::string& path, bool json_output,
    std::chrono::milliseconds timeout, const std::function<bool(std::string_view)>& print)
{
    auto client = TRY(connect(path, timeout));
    auto probe = client.probe();
    if (!probe)
        return failure(Exit::Connection, "{}", probe.error().message);
    const auto& welcome = client.welcome();
    if (json_output) {
        json outputs = json::array();
        for (const auto& o : probe->outputs)
            outputs.push_back({ { "output", o.output }, { "enabled", o.enabled },
                { "width", o.width }, { "height", o.height },
                { "fourcc", ex::fourcc_name(o.fourcc) }, { "generation", o.generation } });
        json value = { { "protocol", { welcome.major, welcome.minor } },
            { "max-leases", welcome.max_leases },
            { "plane-types", plane_type_json(probe->plane_types) },
            { "crc", (probe->flags & ex::PROBE_CRC) != 0 },
            { "cursor", (probe->flags & ex::PROBE_CURSOR) != 0 },
            { "release-timeout-ms", probe->release_timeout_ms }, { "outputs", outputs } };
        print(dump(value) + "\n");
        return {};
    }
    std::string out = fmt::format("protocol {}.{}, plane types {}, crc {}, cursor {}, release "
                                  "timeout {} ms, at most {} leases per consumer\n",
        welcome.major, welcome.minor, ex::plane_type_names(probe->plane_types),
        (probe->flags & ex::PROBE_CRC) ? "yes" : "no",
        (probe->flags & ex::PROBE_CURSOR) ? "yes" : "no", probe->release_timeout_ms,
        welcome.max_leases);
    for (const auto& o : probe->outputs)
        out += o.enabled ? fmt::format("output {}: {}x{} {} generation {}\n", o.output, o.width,
                   o.height, ex::fourcc_name(o.fourcc), o.generation)
                         : fmt::format("output {}: disabled\n", o.output);
    print(out);
    return {};
}

CtlResult<void> export_watch(const std::string& path, const WatchOptions& options,
    std::chrono::milliseconds timeout, const std::function<bool(std::string_view)>& print)
{
    auto client = TRY(connect(path, timeout));
    auto lease = client.lease(options.output,
        options.exclusive ? ex::LeaseKind::Exclusive : ex::LeaseKind::Shared, ex::PLANE_REGION);
    if (!lease)
        return failure(
            Exit::Failed, "lease of output {}: {}", options.output, lease.error().message);
    uint32_t flips = 0;
    while (!options.flips || flips < *options.flips) {
        auto message = TRY(next_record(client, options.interrupt_fd));
        if (!message)
            break;
        std::string line = options.json ? dump(record_json(*message)) : ex::record_line(*message);
        if (!print(line + "\n"))
            break;
        if (auto f = message->as<ex::Flip>()) {
            ++flips;
            // Done with it as soon as it is printed: an exclusive lease never holds the guest.
            if (auto acked = client.ack(lease->lease, f->generation); !acked)
                return failure(Exit::Connection, "{}", acked.error().message);
        }
        if (message->as<ex::Revoked>())
            return failure(Exit::Failed, "the lease was revoked ({})", ex::record_line(*message));
        if (auto e = message->as<ex::ErrorReply>())
            return failure(Exit::Failed, "the backend sent an error: {}", ex::get_text(e->text));
    }
    return {};
}

} // namespace vgpu::ctl
