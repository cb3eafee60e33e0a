#include "app/options.h"

#include "virtio_gpu/edid.h"

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <tuple>

#include <CLI/CLI.hpp>

namespace vgpu::app {

namespace {

// What the command line binds to, before the checks turn it into Options.
struct Bindings {
    Options options;
    std::string level = "info";
    bool no_mem_slots = false;
    std::vector<std::string> outputs;
    std::string max_hostmem = "256M";
    unsigned max_outputs = 0;
    std::string outputs_from = "qemu";
    std::string dmabuf = "off";
    unsigned release_timeout_ms = 20;
    std::string export_mode = "0600", export_group;
    std::string socket_mode = "0600", control_mode = "0600";
    std::optional<std::string> log;
    std::optional<std::string> config;
};

// Options that only the command line may give: who connects us, and what file to read.
constexpr std::string_view COMMAND_LINE_ONLY[] = { "socket-path", "fd", "print-capabilities",
    "config", "help" };

void define_options(CLI::App& cli, Bindings& b)
{
    auto* socket = cli.add_option("--socket-path", b.options.socket_path,
        "listen on this unix socket for the frontend (QEMU)");
    auto* fd = cli.add_option("--fd", b.options.fd,
                      "serve an already connected socket (libvirt); exit when it closes")
                   ->check(CLI::NonNegativeNumber);
    socket->excludes(fd);
    cli.add_flag("--print-capabilities", b.options.print_capabilities,
        "print the backend's capabilities as JSON and exit");
    cli.add_flag("--no-configure-mem-slots", b.no_mem_slots,
        "do not offer CONFIGURE_MEM_SLOTS, so the frontend sends SET_MEM_TABLE instead of "
        "ADD_MEM_REG");
    cli.add_option("--log-level", b.level, "error, warn, info, debug or trace")
        ->default_val("info");
    cli.add_option("--output", b.outputs,
        "an output WIDTHxHEIGHT of the backend's (repeatable, up to 16; default 1280x800): what "
        "the guest is told when QEMU gives no display socket, or always with --outputs-from "
        "backend");
    cli.add_option("--outputs-from", b.outputs_from,
           "who tells the guest its monitors (GET_DISPLAY_INFO, GET_EDID) when QEMU gives its "
           "display socket: qemu (default: QEMU's UI; headless, only its first output is on) or "
           "backend (our --outputs, hotpluggable with vgpu-ctl; QEMU still gets every output's "
           "frames, but its UI's resizes no longer reach the guest)")
        ->check(CLI::IsMember({ "qemu", "backend" }));
    cli.add_option("--max-hostmem", b.max_hostmem,
        "host memory for guest resources, e.g. 256M or 1G (default 256M)");
    cli.add_flag("--blob", b.options.blob,
        "accept blob resources (RESOURCE_CREATE_BLOB, SET_SCANOUT_BLOB) even when the driver did "
        "not negotiate RESOURCE_BLOB: QEMU's vhost-user-gpu-pci never offers it to the guest");
    cli.add_option("--dmabuf", b.dmabuf,
           "show blobs in QEMU's GL console from dmabufs of the guest's pages: off (default: "
           "UPDATE messages), udmabuf (/dev/udmabuf); memfd-test is a stand-in for the test "
           "harness. QEMU offers DMABUF2 whether or not its console has GL, and a console "
           "without GL shows no dmabuf: turn it on only with a GL display")
        ->check(CLI::IsMember({ "off", "udmabuf", "memfd-test" }));
    cli.add_option("--release-timeout", b.release_timeout_ms,
           "milliseconds a fenced blob flush waits for the sinks still reading the framebuffer "
           "it replaced before they copy what they need (default 20; the guest waits 50)")
        ->check(CLI::Range(0u, 10000u));
    cli.add_option("--max-outputs", b.max_outputs,
        "output slots (num_scanouts, up to 16); slots beyond the --outputs start unplugged "
        "(hotplug them with vgpu-ctl)");
    cli.add_option("--control", b.options.control_path,
        "open the JSON control socket (QMP-style) at this path");
    cli.add_option("--max-control-clients", b.options.max_control_clients,
           "control clients served at once (default 16); more wait until one leaves")
        ->check(CLI::Range(size_t(1), size_t(1024)));
    cli.add_option("--export", b.options.export_path,
        "open the export socket at this path: outputs handed to consumers in other processes "
        "(vgpu-view, vgpu-ctl watch) by file descriptor (docs/export.md)");
    cli.add_option("--export-mode", b.export_mode,
        "permissions of the --export socket, octal (default 0600); a consumer that may connect "
        "sees the outputs it leases");
    cli.add_option("--export-group", b.export_group,
        "group of the --export socket (a name or number), for --export-mode 0660");
    cli.add_flag("--export-guest-memory", b.options.export_guest_memory,
        "let export consumers lease blobs as guest memory (zero copy): a read-only fd of guest "
        "RAM "
        "and the blob's extents. Such a consumer can read ALL of guest RAM and keeps it after a "
        "revoke: trust it as you trust QEMU");
    cli.add_option("--socket-mode", b.socket_mode,
        "permissions of the --socket-path socket, octal (default 0600: only this user connects)");
    cli.add_option("--control-mode", b.control_mode,
        "permissions of the --control socket, octal (default 0600); whoever may connect can make "
        "the backend write screendump files as its user");
    cli.add_option("--log", b.log,
        "where the log goes: stderr, syslog, or file:PATH (may name {domain} and {pid}); default "
        "stderr, or when stderr is /dev/null (libvirt starts us so) "
        "/var/log/vgpu-display/{domain}.log");
    cli.add_option("--config", b.config,
        "read this configuration file instead of /etc/vgpu-display/vgpu-display.conf (also "
        "$VGPU_DISPLAY_CONFIG); its keys are these options' long names (docs/libvirt.md)");
}

LogDestination default_log(const Environment& environment)
{
    if (!environment.stderr_is_null)
        return {};
    if (environment.root || environment.home.empty())
        return { LogDestination::Kind::File, "/var/log/vgpu-display/{domain}.log" };
    return { LogDestination::Kind::File, environment.home + "/vgpu-display/{domain}.log" };
}

instance::Substitutions substitutions_of(const Environment& environment)
{
    instance::Substitutions s;
    s.pid = environment.pid;
    s.domain = environment.libvirt ? environment.libvirt->name.name
                                   : fmt::format("pid-{}", environment.pid);
    // libvirt refuses '/' in names; a file name must not hold one either way.
    std::replace(s.domain.begin(), s.domain.end(), '/', '_');
    return s;
}

// Where the log goes by `text` (or by default), placeholders filled in; nullopt if unusable.
std::optional<LogDestination> expanded_log(
    const std::optional<std::string>& text, const Environment& environment)
{
    LogDestination destination = default_log(environment);
    if (text) {
        auto expanded = instance::expand(*text, substitutions_of(environment));
        if (!expanded)
            return std::nullopt;
        auto parsed = parse_log_destination(*expanded);
        if (!parsed)
            return std::nullopt;
        return *parsed;
    }
    auto path = instance::expand(destination.path, substitutions_of(environment));
    if (!path)
        return std::nullopt;
    destination.path = *path;
    return destination;
}

// The checks, after the command line and the file are merged.
std::variant<Options, ExitNow> finish(Bindings& b, const Environment& environment)
{
    for (auto [name, path] : { std::pair { "--control", &b.options.control_path },
             std::pair { "--export", &b.options.export_path }, std::pair { "--log", &b.log } }) {
        if (!*path)
            continue;
        auto expanded = instance::expand(**path, substitutions_of(environment));
        if (!expanded)
            return ExitNow { 2,
                fmt::format("vgpu-display: {} {}: {}", name, **path, expanded.error().message) };
        **path = *expanded;
    }
    if (b.log) {
        auto destination = parse_log_destination(*b.log);
        if (!destination)
            return ExitNow { 2,
                fmt::format("vgpu-display: --log {}: {}", *b.log, destination.error().message) };
        b.options.log = *destination;
    } else {
        b.options.log = expanded_log(std::nullopt, environment).value_or(LogDestination {});
    }
    if (b.options.export_guest_memory && !b.options.export_path)
        return ExitNow { 2, "vgpu-display: --export-guest-memory needs --export" };
    auto parsed_level = log::parse_level(b.level);
    if (!parsed_level)
        return ExitNow { 2, fmt::format("vgpu-display: --log-level: unknown level '{}'", b.level) };
    b.options.log_level = *parsed_level;
    b.options.offer_configure_mem_slots = !b.no_mem_slots;
    b.options.outputs_from_backend = b.outputs_from == "backend";
    if (b.outputs.size() > virtio_gpu::MAX_SCANOUTS)
        return ExitNow { 2,
            fmt::format("vgpu-display: --output: at most {} outputs", virtio_gpu::MAX_SCANOUTS) };
    for (const auto& text : b.outputs) {
        auto mode = parse_mode(text);
        if (!mode)
            return ExitNow { 2,
                fmt::format("vgpu-display: --output {}: {}", text, mode.error().message) };
        b.options.outputs.push_back(*mode);
    }
    if (b.options.outputs.empty())
        b.options.outputs.push_back(virtio_gpu::OutputMode {});
    if (b.max_outputs > virtio_gpu::MAX_SCANOUTS
        || (b.max_outputs && b.max_outputs < b.options.outputs.size()))
        return ExitNow { 2,
            fmt::format("vgpu-display: --max-outputs {} must be within {}..{}", b.max_outputs,
                b.options.outputs.size(), virtio_gpu::MAX_SCANOUTS) };
    while (b.options.outputs.size() < b.max_outputs)
        b.options.outputs.push_back(virtio_gpu::OutputMode { 1280, 800, false });
    for (auto [name, text, out] :
        { std::tuple { "--socket-mode", &b.socket_mode, &b.options.socket_mode },
            std::tuple { "--control-mode", &b.control_mode, &b.options.control_mode },
            std::tuple { "--export-mode", &b.export_mode, &b.options.export_mode } }) {
        auto mode = parse_mode_bits(*text);
        if (!mode)
            return ExitNow { 2,
                fmt::format("vgpu-display: {} '{}': {}", name, *text, mode.error().message) };
        *out = *mode;
    }
    if (!b.export_group.empty()) {
        auto gid = parse_group(b.export_group);
        if (!gid)
            return ExitNow { 2,
                fmt::format(
                    "vgpu-display: --export-group {}: {}", b.export_group, gid.error().message) };
        b.options.export_group = *gid;
    }
    auto hostmem = parse_size(b.max_hostmem);
    if (!hostmem)
        return ExitNow { 2,
            fmt::format(
                "vgpu-display: --max-hostmem {}: {}", b.max_hostmem, hostmem.error().message) };
    b.options.max_hostmem = *hostmem;
    b.options.release_timeout = std::chrono::milliseconds(b.release_timeout_ms);
    b.options.dmabuf = b.dmabuf == "udmabuf" ? Options::Dmabuf::Udmabuf
        : b.dmabuf == "memfd-test"           ? Options::Dmabuf::MemfdTest
                                             : Options::Dmabuf::Off;
    if (!b.options.print_capabilities && !b.options.socket_path && !b.options.fd)
        return ExitNow { 2, "vgpu-display: exactly one of --socket-path or --fd is required" };
    // One socket file cannot be both: the second listener would replace the first.
    if (b.options.export_path
        && ((b.options.socket_path && same_path(*b.options.socket_path, *b.options.export_path))
            || (b.options.control_path
                && same_path(*b.options.control_path, *b.options.export_path))))
        return ExitNow { 2,
            fmt::format("vgpu-display: --export {} is the path of another socket",
                *b.options.export_path) };
    if (b.options.socket_path && b.options.control_path
        && same_path(*b.options.socket_path, *b.options.control_path))
        return ExitNow { 2,
            fmt::format(
                "vgpu-display: --control {} is the --socket-path", *b.options.control_path) };
    return std::move(b.options);
}

std::vector<char*> pointers(std::vector<std::string>& words)
{
    std::vector<char*> out;
    out.reserve(words.size());
    for (auto& w : words)
        out.push_back(w.data());
    return out;
}

// The long name of each option the command line gave.
std::set<std::string> given_names(const CLI::App& cli)
{
    std::set<std::string> names;
    for (const auto* option : cli.get_options())
        if (option->count() > 0)
            for (const auto& name : option->get_lnames())
                names.insert(name);
    return names;
}

instance::KeyKind key_kind(const CLI::App& cli, std::string_view key)
{
    for (auto only : COMMAND_LINE_ONLY)
        if (key == only)
            return instance::KeyKind::CommandLineOnly;
    for (const auto* option : cli.get_options()) {
        const auto& names = option->get_lnames();
        if (std::find(names.begin(), names.end(), key) == names.end())
            continue;
        if (option->get_expected_max() == 0)
            return instance::KeyKind::Flag;
        return option->get_expected_max() > 1 ? instance::KeyKind::Repeatable
                                              : instance::KeyKind::Single;
    }
    return instance::KeyKind::Unknown;
}

// "vgpu-display: --output 9x9: ..." about an option the file gave becomes
// "vgpu-display: FILE:LINE: --output 9x9: ...".
std::string with_origin(
    std::string message, const std::vector<std::pair<std::string, std::string>>& origins)
{
    constexpr std::string_view prefix = "vgpu-display: ";
    for (const auto& [option, origin] : origins) {
        for (auto at = message.find(option); at != std::string::npos;
             at = message.find(option, at + 1)) {
            auto after = at + option.size();
            if (after < message.size()
                && (std::isalnum(static_cast<unsigned char>(message[after]))
                    || message[after] == '-'))
                continue;
            auto rest = std::string_view(message);
            if (rest.starts_with(prefix))
                rest.remove_prefix(prefix.size());
            return fmt::format("{}{}: {}", prefix, origin, rest);
        }
    }
    return message;
}

} // namespace

Result<LogDestination> parse_log_destination(std::string_view text)
{
    if (text == "stderr")
        return LogDestination {};
    if (text == "syslog")
        return LogDestination { LogDestination::Kind::Syslog, {} };
    std::string_view path = text;
    if (path.starts_with("file:"))
        path.remove_prefix(5);
    if (!path.starts_with("/"))
        return Error::format("expected stderr, syslog or file:/ABSOLUTE/PATH");
    if (path.ends_with("/"))
        return Error::format("a file's path, not a directory");
    return LogDestination { LogDestination::Kind::File, std::string(path) };
}

std::string describe(const LogDestination& destination)
{
    switch (destination.kind) {
    case LogDestination::Kind::Stderr:
        return "stderr";
    case LogDestination::Kind::Syslog:
        return "syslog";
    case LogDestination::Kind::File:
        return destination.path;
    }
    return "?";
}

Environment Environment::of_this_process()
{
    Environment e;
    if (const char* path = std::getenv(instance::CONFIG_ENVIRONMENT))
        e.config_path = std::string(path);
    e.libvirt = instance::detect_libvirt_start();
    e.pid = ::getpid();
    e.root = ::geteuid() == 0;
    struct stat err {
    }, null {};
    e.stderr_is_null = ::fstat(STDERR_FILENO, &err) < 0
        || (::stat("/dev/null", &null) == 0 && S_ISCHR(err.st_mode) && err.st_rdev == null.st_rdev);
    if (const char* state = std::getenv("XDG_STATE_HOME"); state && *state)
        e.home = state;
    else if (const char* home = std::getenv("HOME"); home && *home)
        e.home = std::string(home) + "/.local/state";
    return e;
}

std::variant<Options, ExitNow> parse_options(int argc, char** argv)
{
    return parse_options(argc, argv, Environment::of_this_process());
}

std::variant<Options, ExitNow> parse_options(int argc, char** argv, const Environment& environment)
{
    // 1. The command line alone: help, its own errors, which options it gives, and --config.
    Bindings first;
    CLI::App cli { "vgpu-display: a virtio-gpu device as a vhost-user backend", "vgpu-display" };
    define_options(cli, first);
    try {
        cli.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        return ExitNow { 0, cli.help(), std::nullopt };
    } catch (const CLI::ParseError& e) {
        return ExitNow { 2, fmt::format("vgpu-display: {}", e.what()),
            expanded_log(first.log, environment) };
    }
    auto given = given_names(cli);
    auto log = expanded_log(first.log, environment);

    // 2. The configuration file: its lines for this domain, for the options not given.
    std::optional<std::string> config_path = first.config ? first.config : environment.config_path;
    if (!config_path && ::access(environment.default_config_path.c_str(), F_OK) == 0)
        config_path = environment.default_config_path;
    std::vector<std::string> words { argc > 0 ? argv[0] : "vgpu-display" };
    std::vector<std::pair<std::string, std::string>> origins; // "--key" -> "FILE:LINE"
    std::string section;
    if (config_path) {
        auto rules = [&cli](std::string_view key) { return key_kind(cli, key); };
        auto config = instance::load_config(*config_path, rules);
        if (!config)
            return ExitNow { 2, fmt::format("vgpu-display: {}", config.error().message), log };
        std::optional<instance::DomainIdentity> domain;
        if (environment.libvirt)
            domain = instance::DomainIdentity { environment.libvirt->name.name,
                environment.libvirt->name.maybe_truncated };
        auto entries = instance::select_entries(*config, domain);
        if (!entries)
            return ExitNow { 2, fmt::format("vgpu-display: {}", entries.error().message), log };
        if (auto found = instance::find_section(*config, domain); found && *found)
            section = (*found)->domain;
        for (const auto& entry : *entries) {
            if (given.contains(entry.key))
                continue;
            // A usable log line is where the errors go; a broken one leaves the default.
            if (entry.key == "log")
                if (auto configured = expanded_log(entry.value, environment))
                    log = configured;
            if (rules(entry.key) == instance::KeyKind::Flag) {
                if (auto on = instance::parse_bool(entry.value); on && *on)
                    words.push_back("--" + entry.key);
            } else {
                words.push_back(fmt::format("--{}={}", entry.key, entry.value));
            }
            origins.emplace_back("--" + entry.key, fmt::format("{}:{}", *config_path, entry.line));
        }
    }
    for (int i = 1; i < argc; ++i)
        words.emplace_back(argv[i]);

    // 3. Both together, through the same options and checks.
    Bindings b;
    CLI::App merged { "vgpu-display", "vgpu-display" };
    define_options(merged, b);
    auto merged_argv = pointers(words);
    try {
        merged.parse(int(merged_argv.size()), merged_argv.data());
    } catch (const CLI::ParseError& e) {
        return ExitNow { 2, with_origin(fmt::format("vgpu-display: {}", e.what()), origins), log };
    }
    auto result = finish(b, environment);
    if (auto* exit_now = std::get_if<ExitNow>(&result)) {
        exit_now->text = with_origin(std::move(exit_now->text), origins);
        exit_now->log = log;
        return result;
    }
    auto& options = std::get<Options>(result);
    options.libvirt = environment.libvirt;
    options.config_path = config_path.value_or("");
    options.config_section = section;
    return result;
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
