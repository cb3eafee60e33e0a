// vgpu-vnc: one output of vgpu-display's export socket as a VNC server (docs/vnc.md), with the
// browser view (noVNC) on an HTTP port of its own, and keyboard and pointer to the guest through
// QEMU's QMP. A consumer in its own process: the backend never links libvncserver.
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "base/log.h"
#include "export/client.h"
#include "export/describe.h"
#include "view/view_state.h"
#include "vnc/poll_set.h"
#include "vnc/qmp_input.h"
#include "vnc/tcp.h"
#include "vnc/vnc_server.h"
#include "vnc/web_server.h"

namespace vgpu::vnc {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace ex = vgpu::exporting;

struct Args {
    std::string export_path;
    uint32_t output = 0;
    std::string listen = "127.0.0.1:5900";
    std::string http;
    std::string web;
    std::string qmp;
    std::string password_file;
    std::string tls_cert, tls_key;
    std::string plane = "region";
    std::string name;
    std::string log_level = "info";
};

// QMP as the VNC server's input sink.
class QmpSink final : public InputSink {
public:
    explicit QmpSink(QmpInput& qmp)
        : m_qmp(qmp)
    {
    }
    void key(uint32_t keysym, bool down) override { m_qmp.key(keysym, down); }
    void pointer(int x, int y, uint32_t buttons, uint32_t width, uint32_t height) override
    {
        m_qmp.pointer(x, y, buttons, width, height);
    }
    void release_all() override { m_qmp.release_all_keys(); }

private:
    QmpInput& m_qmp;
};

// The leased output: the export connection, the lease and what it showed.
struct Source {
    std::optional<ex::Client> client;
    std::optional<ex::LeaseHandle> lease;
    view::ViewState state;
    uint32_t cursor_id = 0;
};

Result<void> attach(Source& source, const Args& args)
{
    auto client = TRY(ex::Client::connect(args.export_path, "vgpu-vnc"));
    auto lease = TRY(client.lease(args.output, ex::LeaseKind::Shared,
        *ex::plane_type_named(args.plane))); // CLI11 checked the name
    source.client.emplace(std::move(client));
    source.lease.emplace(std::move(lease));
    source.state = view::ViewState();
    source.cursor_id = 0;
    return {};
}

void detach(Source& source, std::string_view why)
{
    log::message(log::Level::Warn, "export: {}; connecting again every second", why);
    source.lease.reset();
    source.client.reset();
}

// Applies what the backend sent; false when the connection is over.
bool drain(Source& source, VncServer& server)
{
    for (;;) {
        auto message = source.client->next(0ms);
        if (!message) {
            detach(source, message.error().message);
            return false;
        }
        if (!*message)
            break;
        auto change = source.state.apply(**message);
        if (!change) {
            detach(source, change.error().message);
            return false;
        }
        if (*change == view::ViewState::Change::LeaseRevoked) {
            detach(source, source.state.revoked_reason());
            return false;
        }
        if (*change == view::ViewState::Change::NewMode && source.state.enabled())
            server.resize(source.state.width(), source.state.height());
        if (*change == view::ViewState::Change::NewCursor) {
            const auto& c = source.state.cursor();
            if (!c.image || c.image_id != source.cursor_id)
                server.set_cursor(c.image, c.hot_x, c.hot_y);
            source.cursor_id = c.image ? c.image_id : 0;
            server.move_cursor(c.x, c.y);
        }
    }
    if (auto upload = source.state.take_upload()) {
        if (auto r = server.update(*upload->buffer, upload->source, upload->damage); !r)
            log::message(log::Level::Warn, "vnc: {}", r.error().message);
    }
    return true;
}

int fail(int code, const std::string& message)
{
    std::fprintf(stderr, "vgpu-vnc: %s\n", message.c_str());
    return code;
}

// The password's first line; the file must be the owner's alone (as ssh asks of its keys).
Result<std::string> read_password(const std::string& path)
{
    struct stat st { };
    if (::stat(path.c_str(), &st) != 0)
        return Error::from_errno(path);
    if (st.st_mode & 077)
        return Error::format(
            "{}: readable by others (mode {:o}): chmod 600 it", path, st.st_mode & 0777);
    auto bytes = TRY(read_whole_file(path, 4096));
    std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    text = text.substr(0, text.find_first_of("\r\n"));
    if (text.empty())
        return Error::format("{}: the first line (the password) is empty", path);
    if (text.size() > 8)
        log::message(log::Level::Warn,
            "{}: VNC authentication uses only the first 8 characters of the password", path);
    return text;
}

std::string default_web_dir()
{
    std::error_code error;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
    return (exe.parent_path().parent_path() / "share" / "vgpu-display" / "web").string();
}

int run(const Args& args)
{
    log::set_program("vgpu-vnc");
    log::set_level(*log::parse_level(args.log_level)); // CLI11 checked the name
    auto rfb_endpoint = parse_endpoint(args.listen);
    if (!rfb_endpoint)
        return fail(2, "--listen " + rfb_endpoint.error().message);
    std::optional<Endpoint> http_endpoint;
    if (!args.http.empty()) {
        auto e = parse_endpoint(args.http);
        if (!e)
            return fail(2, "--http " + e.error().message);
        if (!e->loopback())
            return fail(2,
                fmt::format("--http {}: the browser view is served on loopback only "
                            "(it has no TLS); reach it through an SSH tunnel",
                    args.http));
        http_endpoint = *e;
    }
    VncOptions options;
    options.desktop_name = args.name.empty() ? fmt::format("vgpu-display output {}", args.output)
                                             : args.name;
    if (!args.password_file.empty()) {
        auto password = read_password(args.password_file);
        if (!password)
            return fail(2, "--password-file " + password.error().message);
        options.password = *password;
    }
    options.tls_cert = args.tls_cert;
    options.tls_key = args.tls_key;
    // Beyond loopback: a password, and TLS where libvncserver has it (WebSocket clients, wss).
    if (!rfb_endpoint->loopback() && (options.password.empty() || options.tls_cert.empty()))
        return fail(2,
            fmt::format("--listen {} is not loopback: it needs --password-file (VNC "
                        "authentication) and --tls-cert (TLS for WebSocket clients)",
                args.listen));

    Source source;
    if (auto r = attach(source, args); !r)
        return fail(1, fmt::format("export socket {}: {}", args.export_path, r.error().message));

    std::optional<QmpInput> qmp;
    std::optional<QmpSink> sink;
    if (!args.qmp.empty()) {
        qmp.emplace(args.qmp);
        if (auto r = qmp->connect(); !r)
            return fail(1, fmt::format("--qmp {}", r.error().message));
        sink.emplace(*qmp);
    }
    auto server = VncServer::create(options, sink ? &*sink : nullptr);
    if (!server)
        return fail(1, server.error().message);
    auto listener = listen_tcp(*rfb_endpoint);
    if (!listener)
        return fail(1, "--listen " + listener.error().message);
    std::unique_ptr<WebServer> web;
    if (http_endpoint) {
        auto created = WebServer::create(*http_endpoint,
            args.web.empty() ? default_web_dir() : args.web,
            [&](Fd socket) { (*server)->add_client(std::move(socket)); });
        if (!created)
            return fail(1, "--http " + created.error().message);
        web = std::move(*created);
    }

    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &signals, nullptr);
    Fd signal_fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));

    std::printf("vnc %s\n", rfb_endpoint->host_port().c_str());
    if (web)
        std::printf("http http://%s/\n", web->endpoint().host_port().c_str());
    std::printf("ready\n");
    std::fflush(stdout);
    log::message(log::Level::Info, "serving output {} of {} on vnc {}{}", args.output,
        args.export_path, rfb_endpoint->host_port(),
        web ? fmt::format(", http://{}/", web->endpoint().host_port()) : std::string());

    auto next_attempt = Clock::now();
    PollSet set;
    for (;;) {
        if (!source.client && Clock::now() >= next_attempt) {
            if (auto r = attach(source, args); !r)
                next_attempt = Clock::now() + 1s;
            else
                log::message(log::Level::Info, "export: leased output {} again", args.output);
        }
        set.clear();
        set.add(signal_fd.get(), POLLIN);
        set.add(listener->get(), POLLIN);
        if (web)
            web->fill(set);
        (*server)->fill(set);
        if (source.client) {
            set.add(source.client->socket(), POLLIN);
            set.add(source.lease->eventfd.get(), POLLIN);
        }
        if (qmp)
            set.add(qmp->fd(), short(POLLIN | (qmp->wants_write() ? POLLOUT : 0)));
        set.wait(web && web->needs_tick() ? WebServer::TICK : 1000ms);

        if (set.revents(signal_fd.get()) & POLLIN)
            break;
        if (set.revents(listener->get()) & POLLIN)
            for (int fd = -1;
                 (fd = ::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC)) >= 0;)
                (*server)->add_client(Fd(fd));
        if (web)
            web->on_poll(set);
        if (qmp && qmp->fd() >= 0) {
            if (set.revents(qmp->fd()) & (POLLIN | POLLHUP | POLLERR))
                qmp->on_readable();
            if (qmp->fd() >= 0 && (set.revents(qmp->fd()) & POLLOUT))
                qmp->on_writable();
        }
        if (source.client) {
            eventfd_drain(source.lease->eventfd.get());
            if (!drain(source, **server))
                next_attempt = Clock::now() + 1s;
        }
        (*server)->process();
    }
    const auto& c = (*server)->counters();
    log::message(log::Level::Info,
        "stopping: {} clients served, {} updates sent, {} damage rectangles, {} bytes copied, {} "
        "resizes, {} keys, {} pointer events",
        c.clients_accepted, c.updates_sent, c.rects_marked, c.bytes_copied, c.resizes, c.key_events,
        c.pointer_events);
    return 0;
}

} // namespace
} // namespace vgpu::vnc

namespace {
int checked_main(int argc, char** argv)
{
    vgpu::vnc::Args args;
    CLI::App cli { "vgpu-vnc: an output of vgpu-display's export socket as a VNC server, with a "
                   "browser view",
        "vgpu-vnc" };
    cli.add_option("--export", args.export_path, "the backend's export socket")
        ->envname("VGPU_EXPORT")
        ->required();
    cli.add_option("--output", args.output,
        "the output (scanout) to serve (default 0; one "
        "vgpu-vnc per output)");
    cli.add_option("--listen", args.listen,
        "ADDRESS:PORT for VNC clients (default 127.0.0.1:5900; port 0 picks one; beyond "
        "loopback needs --password-file and --tls-cert)");
    cli.add_option("--http", args.http,
        "ADDRESS:PORT (loopback) for the browser view: the page, noVNC and the WebSocket");
    cli.add_option("--web", args.web,
        "the browser view's files (index.html, novnc/; default: share/vgpu-display/web beside "
        "the program)");
    cli.add_option("--qmp", args.qmp,
        "QEMU's QMP socket (a -qmp of vgpu-vnc's own): keyboard and pointer go to the guest");
    cli.add_option("--password-file", args.password_file,
        "VNC authentication with the password on this file's first line (mode 600)");
    cli.add_option("--tls-cert", args.tls_cert, "PEM certificate: TLS (wss) for WebSocket clients");
    cli.add_option("--tls-key", args.tls_key, "PEM key for --tls-cert (default: in the cert file)");
    cli.add_option("--plane", args.plane,
           "region (default) or guest-memory (blob guests; vgpu-display --export-guest-memory)")
        ->check(CLI::IsMember({ "region", "guest-memory" }));
    cli.add_option("--name", args.name, "the desktop name clients show");
    cli.add_option("--log-level", args.log_level, "error, warn, info, debug or trace")
        ->check(CLI::IsMember({ "error", "warn", "info", "debug", "trace" }));
    try {
        cli.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) {
            std::printf("%s", cli.help().c_str());
            return 0;
        }
        std::fprintf(stderr, "vgpu-vnc: %s\n", e.what());
        return 2;
    }
    return vgpu::vnc::run(args);
}
} // namespace

int main(int argc, char** argv)
{
    ::signal(SIGPIPE, SIG_IGN);
    try {
        return checked_main(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vgpu-vnc: fatal: %s\n", e.what());
        return 1;
    }
}
