// vgpu-display: wires the layers together. The data path: vhost (frontend socket, guest memory,
// queues) -> virtio_gpu (decode, handlers) -> display (QEMU's display socket, later our sinks).
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <filesystem>

#include "app/capabilities.h"
#include "app/instance/registry.h"
#include "app/options.h"
#include "app_version.h"
#include "base/event_loop.h"
#include "base/fd_budget.h"
#include "base/log.h"
#include "base/sigbus.h"
#include "control/control_server.h"
#include "display/capture/crc_capture.h"
#include "display/display.h"
#include "vhost/backend_server.h"
#include "virtio/dmabuf_export.h"
#include "virtio_gpu/device.h"

namespace {

using namespace vgpu;

// SIGTERM and SIGINT arrive through a signalfd in the loop, so shutdown runs on the loop thread.
Result<Fd> block_termination_signals()
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, nullptr) < 0)
        return Error::from_errno("sigprocmask");
    int fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0)
        return Error::from_errno("signalfd");
    return Fd(fd);
}

// The log's first line: who started us, for which domain, and what configured us.
std::string start_line(const app::Options& options)
{
    std::string who = options.libvirt
        ? fmt::format("libvirt domain '{}'{} (video {}, pid file {})", options.libvirt->name.name,
            options.libvirt->name.maybe_truncated ? " (the first 20 characters)" : "",
            options.libvirt->name.alias, options.libvirt->pid_file)
        : std::string("no libvirt pid file");
    std::string config = options.config_path.empty()
        ? std::string("no configuration file")
        : fmt::format("configuration {}{}", options.config_path,
            options.config_section.empty() ? std::string()
                                           : fmt::format(" [domain {}]", options.config_section));
    return fmt::format("vgpu-display {} started, pid {}, {}: {}; {}; control {}; export {}",
        VGPU_VERSION, ::getpid(),
        options.fd ? fmt::format("--fd={}", *options.fd)
                   : fmt::format("--socket-path {}", options.socket_path.value_or("?")),
        who, config, options.control_path.value_or("none"), options.export_path.value_or("none"));
}

// Where the log goes (--log, the configuration file, or by default); a file that cannot be
// opened falls back to syslog, which says why.
void open_log(const app::LogDestination& destination)
{
    using Kind = app::LogDestination::Kind;
    if (destination.kind == Kind::Syslog) {
        log::log_to_syslog();
    } else if (destination.kind == Kind::File) {
        if (auto opened = log::log_to_file(destination.path); !opened) {
            log::log_to_syslog();
            VGPU_LOG_ERROR("log file {}; logging to syslog", opened.error().message);
        }
    }
}

// The instance record (app/instance/registry.h) for vgpu-ctl list, removed when we exit.
class InstanceRecord {
public:
    explicit InstanceRecord(const app::Options& options)
    {
        // Only a backend someone may look for: libvirt's, or one with a socket for clients.
        if (!options.libvirt && !options.control_path && !options.export_path)
            return;
        auto dir = instance::runtime_dir();
        if (!dir)
            return;
        instance::InstanceRecord record;
        record.pid = ::getpid();
        if (options.libvirt) {
            record.domain = options.libvirt->name.name;
            record.alias = options.libvirt->name.alias;
        }
        record.control = options.control_path;
        record.export_path = options.export_path;
        record.log = log::destination();
        record.config = options.config_path;
        record.version = VGPU_VERSION;
        auto written = instance::write_record(*dir, record);
        if (!written) {
            VGPU_LOG_WARN(
                "instance record: {} (vgpu-ctl list will not show us)", written.error().message);
            return;
        }
        VGPU_LOG_DEBUG("instance record {}", *written);
        m_dir = *dir;
    }
    ~InstanceRecord()
    {
        if (!m_dir.empty())
            instance::remove_record(m_dir, ::getpid());
    }
    InstanceRecord(const InstanceRecord&) = delete;
    InstanceRecord& operator=(const InstanceRecord&) = delete;

private:
    std::string m_dir;
};

// A configured socket path such as /run/vgpu-display/{domain}.control: its directory is made when
// missing (0755: the socket's own mode decides who connects).
Result<void> make_parent_directory(const std::string& path)
{
    auto parent = std::filesystem::path(path).parent_path();
    std::error_code error;
    if (parent.empty() || std::filesystem::exists(parent, error))
        return {};
    std::filesystem::create_directories(parent, error);
    if (error)
        return Error::format("{}: {}", parent.string(), error.message());
    return {};
}

Result<int> run(const app::Options& options)
{
    ::signal(SIGPIPE, SIG_IGN);
    // Guest RAM the frontend truncates must not kill us (base/sigbus.h).
    TRY(sigbus::install());
    // Every descriptor the hard limit allows; control clients leave a reserve for the frontend.
    if (auto limit = fds::raise_limit())
        VGPU_LOG_DEBUG("descriptors: up to {}", *limit);
    else
        VGPU_LOG_WARN("descriptors: {}", limit.error().message);
    auto signals = TRY(block_termination_signals());
    auto loop = TRY(EventLoop::create());
    TRY(loop->watch(signals.get(), EPOLLIN, [&](uint32_t) {
        signalfd_siginfo info {};
        if (::read(signals.get(), &info, sizeof(info)) == sizeof(info))
            VGPU_LOG_INFO("signal {}: shutting down", info.ssi_signo);
        loop->stop();
    }));

    // Blobs as dmabufs for QEMU's GL console, when asked for and possible here.
    std::unique_ptr<virtio::DmabufExporter> exporter;
    if (options.dmabuf == app::Options::Dmabuf::Udmabuf) {
        auto made = virtio::make_udmabuf_exporter();
        if (made)
            exporter = made.release_value();
        else
            VGPU_LOG_WARN(
                "--dmabuf udmabuf: {}; blobs go to QEMU as UPDATEs", made.error().message);
    } else if (options.dmabuf == app::Options::Dmabuf::MemfdTest) {
        VGPU_LOG_WARN("--dmabuf memfd-test: dmabufs are stand-in copies, for the test harness");
        exporter = virtio::make_memfd_standin_exporter();
    }
    display::qemu::PacingOptions pacing;
    pacing.dmabuf = exporter != nullptr;
    display::Display display(*loop, pacing);
    virtio_gpu::Device device(virtio_gpu::DeviceOptions { options.outputs, options.max_hostmem,
        options.blob, options.release_timeout, exporter.get(), options.outputs_from_backend,
        options.export_path && options.export_guest_memory });
    device.set_display_host(&display);
    // CRC capture watches every output; its checksums run on a worker, off the device loop.
    display::capture::CrcCapture crc(*loop);
    display.add_sink(&crc);
    // The export socket: outputs handed to consumers in other processes (docs/export.md).
    std::unique_ptr<display::ExportServer> exports;
    if (options.export_path) {
        TRY(make_parent_directory(*options.export_path));
        display::ExportOptions export_options;
        export_options.mode = options.export_mode;
        export_options.group = options.export_group;
        export_options.release_timeout = options.release_timeout;
        if (options.export_guest_memory)
            export_options.plane_types |= exporting::PLANE_GUEST_MEMORY;
        if (options.export_guest_memory && exporter)
            export_options.plane_types |= exporting::PLANE_DMABUF;
        export_options.output_count = [&device] { return device.scanout_limit(); };
        exports = TRY(display::ExportServer::create(*loop, *options.export_path, export_options));
        display.add_sink(exports.get());
        crc.add_entry_listener(
            [raw = exports.get()](uint32_t output, const display::capture::CrcEntry& e) {
                raw->crc_entry(output, e.frame, e.crc);
            });
    }
    std::unique_ptr<control::ControlServer> control;
    if (options.control_path) {
        TRY(make_parent_directory(*options.control_path));
        control::ControlLimits limits;
        limits.max_clients = options.max_control_clients;
        limits.socket_mode = options.control_mode;
        control = TRY(control::ControlServer::create(
            *loop, *options.control_path, device, display, crc, limits));
        display.add_sink(control.get());
        control->set_export(exports.get());
    }
    auto server = TRY(vhost::BackendServer::create(
        *loop, device, { options.offer_configure_mem_slots, options.socket_mode }));

    if (options.socket_path) {
        TRY(server->listen(*options.socket_path));
    } else {
        // libvirt's convention: one connection, and the backend ends with it.
        server->set_disconnect_callback([&] { loop->stop(); });
        TRY(server->serve_connected(Fd(*options.fd)));
    }
    // Said once everything is up: a start that fails leaves one line, its error.
    VGPU_LOG_INFO("{}", start_line(options));
    InstanceRecord record(options);
    VGPU_LOG_INFO("blob resources: offered{}; release timeout {} ms; to QEMU as {}",
        options.blob ? ", and taken without negotiation (--blob)" : "",
        options.release_timeout.count(), exporter ? exporter->name() : "UPDATE messages");
    TRY(loop->run());
    return 0;
}

} // namespace

namespace {
int checked_main(int argc, char** argv)
{
    auto parsed = vgpu::app::parse_options(argc, argv);
    if (auto* exit_now = std::get_if<vgpu::app::ExitNow>(&parsed)) {
        std::fprintf(exit_now->code == 0 ? stdout : stderr, "%s\n", exit_now->text.c_str());
        // Under libvirt stderr is /dev/null: the one line goes to the log as well.
        if (exit_now->code != 0 && exit_now->log
            && exit_now->log->kind != vgpu::app::LogDestination::Kind::Stderr) {
            open_log(*exit_now->log);
            std::string_view text = exit_now->text;
            if (text.starts_with("vgpu-display: "))
                text.remove_prefix(14);
            VGPU_LOG_ERROR("not started: {}", text);
        }
        return exit_now->code;
    }
    const auto& options = std::get<vgpu::app::Options>(parsed);
    if (options.print_capabilities) {
        std::printf("%s\n",
            vgpu::app::capabilities_json(
                { options.blob, unsigned(options.release_timeout.count()),
                    // What this host can do: udmabuf only where /dev/udmabuf opens.
                    options.dmabuf == vgpu::app::Options::Dmabuf::Udmabuf
                        ? (vgpu::virtio::make_udmabuf_exporter() ? "udmabuf" : nullptr)
                        : options.dmabuf == vgpu::app::Options::Dmabuf::MemfdTest ? "memfd-test"
                                                                                  : nullptr,
                    options.outputs_from_backend, options.export_guest_memory })
                .c_str());
        return 0;
    }
    vgpu::log::set_level(options.log_level);
    open_log(options.log);
    auto result = run(options);
    if (!result) {
        std::fprintf(stderr, "vgpu-display: %s\n", result.error().message.c_str());
        if (vgpu::log::destination() != "stderr")
            VGPU_LOG_ERROR("stopped: {}", result.error().message);
        return 1;
    }
    VGPU_LOG_INFO("exiting");
    return *result;
}
} // namespace

int main(int argc, char** argv)
{
    // Our code never throws; what could escape is a library's exception (bad_alloc above all,
    // fatal as STYLE.md says): one line and a failure exit, not std::terminate's abort.
    try {
        return checked_main(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vgpu-display: fatal: %s\n", e.what());
        return 1;
    }
}
