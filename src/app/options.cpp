#include "app/options.h"

#include "virtio_gpu/edid.h"

#include <grp.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <tuple>

#include <CLI/CLI.hpp>

namespace vgpu::app {

std::variant<Options, ExitNow> parse_options(int argc, char** argv)
{
    Options options;
    std::string level = "info";
    bool no_mem_slots = false;
    std::vector<std::string> outputs;
    std::string max_hostmem = "256M";
    unsigned max_outputs = 0;
    CLI::App cli { "vgpu-display: a virtio-gpu device as a vhost-user backend", "vgpu-display" };
    auto* socket = cli.add_option(
        "--socket-path", options.socket_path, "listen on this unix socket for the frontend (QEMU)");
    auto* fd = cli.add_option("--fd", options.fd,
                      "serve an already connected socket (libvirt); exit when it closes")
                   ->check(CLI::NonNegativeNumber);
    socket->excludes(fd);
    cli.add_flag("--print-capabilities", options.print_capabilities,
        "print the backend's capabilities as JSON and exit");
    cli.add_flag("--no-configure-mem-slots", no_mem_slots,
        "do not offer CONFIGURE_MEM_SLOTS, so the frontend sends SET_MEM_TABLE instead of "
        "ADD_MEM_REG");
    cli.add_option("--log-level", level, "error, warn, info, debug or trace")->default_val("info");
    cli.add_option("--output", outputs,
        "an output WIDTHxHEIGHT of the backend's (repeatable, up to 16; default 1280x800): what "
        "the guest is told when QEMU gives no display socket, or always with --outputs-from "
        "backend");
    std::string outputs_from = "qemu";
    cli.add_option("--outputs-from", outputs_from,
           "who tells the guest its monitors (GET_DISPLAY_INFO, GET_EDID) when QEMU gives its "
           "display socket: qemu (default: QEMU's UI; headless, only its first output is on) or "
           "backend (our --outputs, hotpluggable with vgpu-ctl; QEMU still gets every output's "
           "frames, but its UI's resizes no longer reach the guest)")
        ->check(CLI::IsMember({ "qemu", "backend" }));
    cli.add_option("--max-hostmem", max_hostmem,
        "host memory for guest resources, e.g. 256M or 1G (default 256M)");
    cli.add_flag("--blob", options.blob,
        "accept blob resources (RESOURCE_CREATE_BLOB, SET_SCANOUT_BLOB) even when the driver did "
        "not negotiate RESOURCE_BLOB: QEMU's vhost-user-gpu-pci never offers it to the guest");
    std::string dmabuf = "off";
    cli.add_option("--dmabuf", dmabuf,
           "show blobs in QEMU's GL console from dmabufs of the guest's pages: off (default: "
           "UPDATE messages), udmabuf (/dev/udmabuf); memfd-test is a stand-in for the test "
           "harness. QEMU offers DMABUF2 whether or not its console has GL, and a console "
           "without GL shows no dmabuf: turn it on only with a GL display")
        ->check(CLI::IsMember({ "off", "udmabuf", "memfd-test" }));
    unsigned release_timeout_ms = 20;
    cli.add_option("--release-timeout", release_timeout_ms,
           "milliseconds a fenced blob flush waits for the sinks still reading the framebuffer "
           "it replaced before they copy what they need (default 20; the guest waits 50)")
        ->check(CLI::Range(0u, 10000u));
    cli.add_option("--max-outputs", max_outputs,
        "output slots (num_scanouts, up to 16); slots beyond the --outputs start unplugged "
        "(hotplug them with vgpu-ctl)");
    cli.add_option(
        "--control", options.control_path, "open the JSON control socket (QMP-style) at this path");
    cli.add_option("--max-control-clients", options.max_control_clients,
           "control clients served at once (default 16); more wait until one leaves")
        ->check(CLI::Range(size_t(1), size_t(1024)));
    auto* export_option = cli.add_option("--export", options.export_path,
        "open the export socket at this path: outputs handed to consumers in other processes "
        "(vgpu-view, vgpu-ctl watch) by file descriptor (docs/export.md)");
    std::string export_mode = "0600", export_group;
    cli.add_option("--export-mode", export_mode,
        "permissions of the --export socket, octal (default 0600); a consumer that may connect "
        "sees the outputs it leases");
    cli.add_option("--export-group", export_group,
        "group of the --export socket (a name or number), for --export-mode 0660");
    cli.add_flag("--export-guest-memory", options.export_guest_memory,
           "let export consumers lease blobs as guest memory (zero copy): a read-only fd of guest "
           "RAM "
           "and the blob's extents. Such a consumer can read ALL of guest RAM and keeps it after a "
           "revoke: trust it as you trust QEMU")
        ->needs(export_option);
    std::string socket_mode = "0600", control_mode = "0600";
    cli.add_option("--socket-mode", socket_mode,
        "permissions of the --socket-path socket, octal (default 0600: only this user connects)");
    cli.add_option("--control-mode", control_mode,
        "permissions of the --control socket, octal (default 0600); whoever may connect can make "
        "the backend write screendump files as its user");
    try {
        cli.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        return ExitNow { 0, cli.help() };
    } catch (const CLI::ParseError& e) {
        return ExitNow { 2, fmt::format("vgpu-display: {}", e.what()) };
    }
    auto parsed_level = log::parse_level(level);
    if (!parsed_level)
        return ExitNow { 2, fmt::format("vgpu-display: --log-level: unknown level '{}'", level) };
    options.log_level = *parsed_level;
    options.offer_configure_mem_slots = !no_mem_slots;
    options.outputs_from_backend = outputs_from == "backend";
    if (outputs.size() > virtio_gpu::MAX_SCANOUTS)
        return ExitNow { 2,
            fmt::format("vgpu-display: --output: at most {} outputs", virtio_gpu::MAX_SCANOUTS) };
    for (const auto& text : outputs) {
        auto mode = parse_mode(text);
        if (!mode)
            return ExitNow { 2,
                fmt::format("vgpu-display: --output {}: {}", text, mode.error().message) };
        options.outputs.push_back(*mode);
    }
    if (options.outputs.empty())
        options.outputs.push_back(virtio_gpu::OutputMode {});
    if (max_outputs > virtio_gpu::MAX_SCANOUTS
        || (max_outputs && max_outputs < options.outputs.size()))
        return ExitNow { 2,
            fmt::format("vgpu-display: --max-outputs {} must be within {}..{}", max_outputs,
                options.outputs.size(), virtio_gpu::MAX_SCANOUTS) };
    while (options.outputs.size() < max_outputs)
        options.outputs.push_back(virtio_gpu::OutputMode { 1280, 800, false });
    for (auto [name, text, out] :
        { std::tuple { "--socket-mode", &socket_mode, &options.socket_mode },
            std::tuple { "--control-mode", &control_mode, &options.control_mode },
            std::tuple { "--export-mode", &export_mode, &options.export_mode } }) {
        auto mode = parse_mode_bits(*text);
        if (!mode)
            return ExitNow { 2,
                fmt::format("vgpu-display: {} '{}': {}", name, *text, mode.error().message) };
        *out = *mode;
    }
    if (!export_group.empty()) {
        auto gid = parse_group(export_group);
        if (!gid)
            return ExitNow { 2,
                fmt::format(
                    "vgpu-display: --export-group {}: {}", export_group, gid.error().message) };
        options.export_group = *gid;
    }
    auto hostmem = parse_size(max_hostmem);
    if (!hostmem)
        return ExitNow { 2,
            fmt::format(
                "vgpu-display: --max-hostmem {}: {}", max_hostmem, hostmem.error().message) };
    options.max_hostmem = *hostmem;
    options.release_timeout = std::chrono::milliseconds(release_timeout_ms);
    options.dmabuf = dmabuf == "udmabuf" ? Options::Dmabuf::Udmabuf
        : dmabuf == "memfd-test"         ? Options::Dmabuf::MemfdTest
                                         : Options::Dmabuf::Off;
    if (!options.print_capabilities && !options.socket_path && !options.fd)
        return ExitNow { 2, "vgpu-display: exactly one of --socket-path or --fd is required" };
    // One socket file cannot be both: the second listener would replace the first.
    if (options.export_path
        && ((options.socket_path && same_path(*options.socket_path, *options.export_path))
            || (options.control_path && same_path(*options.control_path, *options.export_path))))
        return ExitNow { 2,
            fmt::format(
                "vgpu-display: --export {} is the path of another socket", *options.export_path) };
    if (options.socket_path && options.control_path
        && same_path(*options.socket_path, *options.control_path))
        return ExitNow { 2,
            fmt::format("vgpu-display: --control {} is the --socket-path", *options.control_path) };
    return options;
}

Result<gid_t> parse_group(const std::string& text)
{
    if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
        unsigned long value = std::strtoul(text.c_str(), nullptr, 10);
        if (value > 0x7fffffff)
            return Error::format("group id out of range");
        return gid_t(value);
    }
    group buffer {};
    group* found = nullptr;
    std::vector<char> scratch(16384);
    int r = ::getgrnam_r(text.c_str(), &buffer, scratch.data(), scratch.size(), &found);
    if (r != 0 || !found)
        return Error::format("no such group");
    return found->gr_gid;
}

Result<virtio_gpu::OutputMode> parse_mode(std::string_view text)
{
    unsigned width = 0, height = 0;
    char x = 0, extra = 0;
    std::string copy(text);
    if (std::sscanf(copy.c_str(), "%u%c%u%c", &width, &x, &height, &extra) != 3 || x != 'x')
        return Error::format("expected WIDTHxHEIGHT, such as 1280x800");
    // 16: the smallest scanout QEMU accepts; 4095: the largest an EDID detailed timing can say.
    if (width < 16 || height < 16 || width > 4095 || height > 4095)
        return Error::format("{}x{} is outside 16x16..4095x4095", width, height);
    // The guest asks for the output's EDID: a mode our EDID cannot describe (a pixel clock under
    // 10 MHz at 60 Hz) is refused here rather than failing GET_EDID later.
    if (auto edid = virtio_gpu::build_edid({ .width = width, .height = height }); !edid)
        return Error::format("{}x{}: {}", width, height, edid.error().message);
    return virtio_gpu::OutputMode { width, height };
}

Result<uint64_t> parse_size(std::string_view text)
{
    // Digits, then at most a suffix: no sign, no spaces (strtoull would skip spaces and take
    // " -1" as the largest value), no hex.
    size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
        ++digits;
    if (digits == 0)
        return Error::format("not a size");
    uint64_t value = 0;
    for (char c : text.substr(0, digits)) {
        if (value > (UINT64_MAX - uint64_t(c - '0')) / 10)
            return Error::format("out of range");
        value = value * 10 + uint64_t(c - '0');
    }
    uint64_t multiplier = 1;
    std::string_view suffix = text.substr(digits);
    if (suffix == "K" || suffix == "k")
        multiplier = 1ull << 10;
    else if (suffix == "M" || suffix == "m")
        multiplier = 1ull << 20;
    else if (suffix == "G" || suffix == "g")
        multiplier = 1ull << 30;
    else if (!suffix.empty())
        return Error::format("unknown suffix '{}' (K, M or G)", suffix);
    if (value > UINT64_MAX / multiplier || value == 0)
        return Error::format("out of range");
    return value * multiplier;
}

Result<mode_t> parse_mode_bits(std::string_view text)
{
    if (text.empty() || text.size() > 4)
        return Error::format("expected an octal mode such as 0600");
    mode_t mode = 0;
    for (char c : text) {
        if (c < '0' || c > '7')
            return Error::format("expected an octal mode such as 0600");
        mode = mode_t(mode * 8 + mode_t(c - '0'));
    }
    if (mode > 0777)
        return Error::format("only permission bits (at most 0777)");
    return mode;
}

bool same_path(const std::string& a, const std::string& b)
{
    // Resolves what exists of each path (symlinked directories, ".", "..", "//"); a path that
    // cannot be resolved is compared as written, normalised.
    auto resolve = [](const std::string& path) {
        std::error_code error;
        auto absolute = std::filesystem::absolute(path, error);
        if (error)
            return std::filesystem::path(path).lexically_normal();
        auto resolved = std::filesystem::weakly_canonical(absolute, error);
        return error ? absolute.lexically_normal() : resolved;
    };
    return resolve(a) == resolve(b);
}

} // namespace vgpu::app
