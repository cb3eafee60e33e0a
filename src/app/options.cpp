#include "app/options.h"

#include <CLI/CLI.hpp>

namespace vgpu::app {

std::variant<Options, ExitNow> parse_options(int argc, char** argv)
{
    Options options;
    std::string level = "info";
    bool no_mem_slots = false;
    CLI::App cli { "vgpu-display: a virtio-gpu device as a vhost-user backend", "vgpu-display" };
    auto* socket = cli.add_option("--socket-path", options.socket_path, "listen on this unix socket for the frontend (QEMU)");
    auto* fd = cli.add_option("--fd", options.fd, "serve an already connected socket (libvirt); exit when it closes")
                   ->check(CLI::NonNegativeNumber);
    socket->excludes(fd);
    cli.add_flag("--print-capabilities", options.print_capabilities, "print the backend's capabilities as JSON and exit");
    cli.add_flag("--no-configure-mem-slots", no_mem_slots,
        "do not offer CONFIGURE_MEM_SLOTS, so the frontend sends SET_MEM_TABLE instead of ADD_MEM_REG");
    cli.add_option("--log-level", level, "error, warn, info, debug or trace")->default_val("info");
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
    if (!options.print_capabilities && !options.socket_path && !options.fd)
        return ExitNow { 2, "vgpu-display: exactly one of --socket-path or --fd is required" };
    return options;
}

} // namespace vgpu::app
