// The JSON control socket (docs/control.md): QMP-style requests, replies and events over a unix
// socket, several clients at once. Every socket is non-blocking on the device loop: a slow or
// hostile client gets errors, dropped events or a disconnect, never the device's time.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>

#include <sys/epoll.h>

#include <nlohmann/json.hpp>

#include "base/event_loop.h"
#include "base/fd.h"
#include "base/lifetime.h"
#include "base/offload.h"
#include "base/result.h"
#include "display/capture/crc_capture.h"
#include "display/display.h"
#include "display/export/export_server.h"
#include "display/sink.h"
#include "virtio_gpu/device.h"

namespace vgpu::control {

using json = nlohmann::json;

struct CommandError {
    std::string error_class;
    std::string desc;
};
// A handler answers now (a value or an error), or Later: its work runs off the loop and the
// reply follows through finish_later(); the client's next requests wait for it, in order.
struct Later { };
using CommandResult = Result<std::variant<json, Later>, CommandError>;

struct ControlLimits {
    size_t max_message = 1 << 20; // a request line
    // Bytes waiting to be written to one client: past the first, events to it are dropped
    // (and counted); past the second, which only replies can reach, it is disconnected.
    size_t max_queued_events = 8 << 20;
    size_t max_queued_replies = 32 << 20;
    unsigned max_bad_in_a_row = 16;
    // Requests handled per client per loop turn; the rest wait for the next turn.
    unsigned max_requests_per_turn = 4;
    // Screendumps being encoded and written off the loop at once (each holds a snapshot of the
    // frame); more are answered with the error class Busy.
    size_t max_offloaded = 2;
    // Clients served at once; more wait in the listen backlog until one leaves.
    size_t max_clients = 16;
    // The socket file's mode: whoever may connect may also make us write screendump files.
    mode_t socket_mode = 0600;
};

struct ControlStats {
    uint64_t clients = 0;
    uint64_t requests = 0;
    uint64_t errors = 0;
    uint64_t events_sent = 0;
    uint64_t events_dropped = 0;
    uint64_t clients_dropped = 0;
    uint64_t accept_errors = 0; // accept() failed (out of descriptors or memory)
    uint64_t listen_pauses = 0; // stopped accepting: at the cap or near the descriptor limit
    uint64_t offloaded = 0; // screendumps encoded and written off the loop
    uint64_t busy = 0; // screendumps refused because max_offloaded were in flight
};

class ControlServer final : public display::DisplaySink {
public:
    static Result<std::unique_ptr<ControlServer>> create(EventLoop& loop, const std::string& path,
        virtio_gpu::Device& device, display::Display& display, display::capture::CrcCapture& crc,
        ControlLimits limits = {});
    ~ControlServer() override;

    size_t client_count() const { return m_clients.size(); }
    const ControlStats& stats() const { return m_stats; }

    // DisplaySink: FLIP and MODE_CHANGE events.
    void output_changed(const display::Output& output) override;
    void output_damaged(const display::Output& output, display::Rect damage) override;
    void cursor_changed(uint32_t, const display::CursorState&, bool) override { }
    // From CrcCapture: CRC events.
    void crc_entry(uint32_t output, const display::capture::CrcEntry& entry);
    // The export socket, when there is one: lease-list, lease-revoke, its stats.
    void set_export(display::ExportServer* exports) { m_export = exports; }

private:
    // (Its implicit move constructor is noexcept: clang-tidy counts json's invariant check in
    // it as a throw.)
    struct Client { // NOLINT(bugprone-exception-escape)
        uint64_t id = 0;
        Fd socket;
        EventLoop::WatchId watch = 0;
        std::string in;
        bool discarding = false; // inside an oversized message, until its newline
        std::string out;
        size_t out_sent = 0;
        uint32_t interest = EPOLLIN | EPOLLRDHUP; // what the watch asks for now
        size_t scanned = 0; // `in` holds no newline before this offset
        bool busy = false; // a reply is being prepared off the loop
        bool continuation_posted = false; // more requests wait for the next loop turn
        json request_id; // of the request being handled
        unsigned bad_in_a_row = 0;
        std::set<std::string> events;
        uint64_t dropped = 0;
    };
    using Handler = CommandResult (ControlServer::*)(const json& arguments, Client& client);

    ControlServer(EventLoop& loop, virtio_gpu::Device& device, display::Display& display,
        display::capture::CrcCapture& crc, ControlLimits limits);
    void on_accept();
    // Watches the listener while clients may be accepted: under the cap, not waiting out an
    // accept failure.
    void update_listening();
    void pause_accepting();
    void on_client(uint64_t id, uint32_t events);
    Client* find(uint64_t id);
    void read_input(uint64_t id);
    std::optional<std::string> next_line(Client& client);
    void process_input(uint64_t id);
    void update_interest(uint64_t id);
    void handle_line(uint64_t id, std::string_view line);
    // The reply to a Later request, ready (serialised off the loop): sent, and the client's
    // next requests go on.
    void finish_later(uint64_t id, std::string_view reply_line, bool error);
    static json error_reply(const CommandError& error);
    static std::string reply_line(const json& message);
    void send(uint64_t id, const json& message);
    void send_text(uint64_t id, std::string_view text);
    void flush(uint64_t id);
    void drop_client(uint64_t id, std::string_view why);
    void broadcast(const std::string& event, json data);
    void bad_message(uint64_t id, std::string_view desc, const json& request_id);

    CommandResult cmd_qmp_capabilities(const json&, Client&);
    CommandResult cmd_query_version(const json&, Client&);
    CommandResult cmd_query_capabilities(const json&, Client&);
    CommandResult cmd_query_outputs(const json&, Client&);
    CommandResult cmd_query_resources(const json&, Client&);
    CommandResult cmd_query_stats(const json&, Client&);
    CommandResult cmd_screendump(const json&, Client&);
    CommandResult cmd_crc_start(const json&, Client&);
    CommandResult cmd_crc_read(const json&, Client&);
    CommandResult cmd_crc_stop(const json&, Client&);
    CommandResult cmd_subscribe(const json&, Client&);
    CommandResult cmd_output_add(const json&, Client&);
    CommandResult cmd_output_remove(const json&, Client&);
    CommandResult cmd_output_resize(const json&, Client&);
    CommandResult cmd_lease_list(const json&, Client&);
    CommandResult cmd_lease_revoke(const json&, Client&);

    Result<uint32_t, CommandError> output_argument(const json& arguments) const;
    Result<uint32_t, CommandError> slot_argument(const json& arguments) const;
    static const std::map<std::string, Handler, std::less<>>& handler_table();
    json crc_entries_json(uint32_t output);

    EventLoop& m_loop;
    virtio_gpu::Device& m_device;
    display::Display& m_display;
    display::capture::CrcCapture& m_crc;
    display::ExportServer* m_export = nullptr;
    size_t m_crc_listener = 0;
    ControlLimits m_limits;
    Fd m_listen;
    std::string m_path;
    std::optional<EventLoop::WatchId> m_listen_watch;
    std::optional<EventLoop::WatchId> m_accept_retry;
    uint64_t m_next_client = 1;
    std::map<uint64_t, Client> m_clients;
    const std::map<std::string, Handler, std::less<>>& m_handlers;
    // Last announced mode per output, for MODE_CHANGE.
    std::array<std::tuple<bool, uint32_t, uint32_t>, virtio_gpu::MAX_SCANOUTS> m_modes {};
    ControlStats m_stats;
    std::unique_ptr<Offload> m_offload; // screendump encoding and writing
    Lifetime m_lifetime; // for tasks posted to the loop
};

} // namespace vgpu::control
