// vgpu-ctl: the command-line client of vgpu-display's control socket (docs/control.md). One
// subcommand per control command; human-readable output by default, the reply's "return" value
// with --json. Exit codes: see Exit in ctl_connection.h.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>

#include <CLI/CLI.hpp>

#include "app/tools/ctl_backends.h"
#include "app/tools/ctl_connection.h"
#include "app/tools/ctl_export.h"
#include "app/tools/ctl_format.h"
#include "display/capture/image.h"

namespace vgpu::ctl {

namespace {

// ---- output
// --------------------------------------------------------------------------------------

// Set when stdout turned out to be a closed pipe (`vgpu-ctl events | head`): not an error.
bool g_stdout_closed = false;

// Writes to stdout; false once stdout can take no more.
bool print(std::string_view text, bool flush = false)
{
    if (g_stdout_closed)
        return false;
    bool ok = std::fwrite(text.data(), 1, text.size(), stdout) == text.size();
    if (ok && flush)
        ok = std::fflush(stdout) == 0;
    if (!ok && errno == EPIPE)
        g_stdout_closed = true;
    return ok;
}

void warn(const std::string& text) { std::fprintf(stderr, "vgpu-ctl: %s\n", text.c_str()); }

// ---- signals
// -------------------------------------------------------------------------------------

// While following, SIGINT and SIGTERM are blocked and read from a signalfd, so that they end the
// wait for events and vgpu-ctl can still stop CRC capture before it exits.
class SignalWatch {
public:
    static CtlResult<std::unique_ptr<SignalWatch>> create()
    {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &set, nullptr) < 0)
            return failure(Exit::Failed, "sigprocmask: {}", std::strerror(errno));
        int fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        if (fd < 0) {
            int error = errno;
            sigprocmask(SIG_UNBLOCK, &set, nullptr);
            return failure(Exit::Failed, "signalfd: {}", std::strerror(error));
        }
        return std::unique_ptr<SignalWatch>(new SignalWatch(Fd(fd), set));
    }
    ~SignalWatch() { release(); }
    int fd() const { return m_fd.get(); }
    // Consumes the pending signal and unblocks: a second Ctrl-C ends the process as usual.
    void release()
    {
        if (!m_fd)
            return;
        signalfd_siginfo info {};
        while (::read(m_fd.get(), &info, sizeof(info)) == ssize_t(sizeof(info))) { }
        m_fd.reset();
        sigprocmask(SIG_UNBLOCK, &m_set, nullptr);
    }

private:
    SignalWatch(Fd fd, sigset_t set)
        : m_fd(std::move(fd))
        , m_set(set)
    {
    }
    Fd m_fd;
    sigset_t m_set;
};

// ---- the command line
// ----------------------------------------------------------------------------

struct Args {
    std::string control;
    std::string domain;
    bool json = false;
    double timeout_seconds = 30;
    std::string output;
    std::string mode;
    std::string file;
    std::string format;
    std::string count;
    std::string raw;
    std::vector<std::string> events;
    bool inline_data = false;
    bool follow = false;
    std::string export_path;
    bool exclusive = false;
    std::string lease;
};

class Context {
public:
    explicit Context(const Args& args)
        : m_args(args)
    {
    }
    const Args& args() const { return m_args; }
    bool json_output() const { return m_args.json; }

    CtlResult<Connection*> connection()
    {
        if (!m_connection) {
            if (m_args.control.empty())
                return failure(
                    Exit::Usage, "no control socket: give --control PATH or set VGPU_CONTROL");
            auto timeout = std::chrono::milliseconds(int64_t(m_args.timeout_seconds * 1000));
            m_connection = TRY(Connection::open(m_args.control, timeout));
        }
        return m_connection.get();
    }
    CtlResult<json> execute(std::string_view name, json arguments = json::object())
    {
        auto* connection = TRY(this->connection());
        return connection->execute(name, std::move(arguments));
    }
    // The reply's value: as JSON with --json, else through `human`.
    void show(const json& value, const std::function<std::string(const json&)>& human) const
    {
        print(m_args.json ? dump(value) + "\n" : human(value));
    }

private:
    const Args& m_args;
    std::unique_ptr<Connection> m_connection;
};

CtlResult<uint32_t> output_index(const Args& args)
{
    auto index = parse_index(args.output);
    if (!index)
        return failure(Exit::Usage, "OUTPUT: {}", index.error().message);
    return *index;
}

CtlResult<Mode> mode_argument(const Args& args)
{
    auto mode = parse_mode(args.mode);
    if (!mode)
        return failure(Exit::Usage, "{}", mode.error().message);
    return *mode;
}

// --count N: nullopt without it.
CtlResult<std::optional<uint32_t>> count_argument(const Args& args)
{
    if (args.count.empty())
        return std::optional<uint32_t>();
    auto count = parse_index(args.count);
    if (!count || *count == 0)
        return failure(Exit::Usage, "--count: '{}' is not a positive integer", args.count);
    return std::optional<uint32_t>(*count);
}

std::string nothing(const json&) { return ""; }

void report_dropped(const json& event)
{
    for (const json* holder : { &event, &field(event, "data") })
        if (const json& dropped = field(*holder, "dropped"); !dropped.is_null())
            warn(fmt::format("the server dropped {} events for this client (it read too slowly)",
                text(dropped)));
}

// ---- commands
// ------------------------------------------------------------------------------------

CtlResult<void> cmd_query(
    Context& context, std::string_view command, std::string (*human)(const json&))
{
    auto value = TRY(context.execute(command));
    context.show(value, human);
    return {};
}

bool valid_utf8(const std::string& text)
{
    try {
        (void)json(text).dump();
        return true;
    } catch (const json::exception&) {
        return false;
    }
}

CtlResult<void> cmd_screendump(Context& context)
{
    const Args& args = context.args();
    uint32_t output = TRY(output_index(args));
    std::string format = args.format;
    if (format.empty()) {
        auto extension = std::filesystem::path(args.file).extension().string();
        for (auto& c : extension)
            c = char(std::tolower(static_cast<unsigned char>(c)));
        if (extension != ".png" && extension != ".ppm")
            return failure(Exit::Usage,
                "screendump: {} must end in .png or .ppm (or give --format)", args.file);
        format = extension.substr(1);
    }
    json arguments = { { "output", output }, { "format", format } };
    std::string filename;
    if (!args.inline_data) {
        // The backend writes the file, from its own working directory: give it an absolute path.
        std::error_code error;
        filename = std::filesystem::absolute(args.file, error).lexically_normal().string();
        if (error)
            return failure(Exit::Usage, "screendump: {}: {}", args.file, error.message());
        if (!valid_utf8(filename))
            return failure(Exit::Usage,
                "screendump: {} is not UTF-8, which JSON cannot carry (use --inline)", args.file);
        arguments["filename"] = filename;
    }
    auto reply = TRY(context.execute("screendump", std::move(arguments)));
    if (args.inline_data) {
        const json& data = field(reply, "data");
        if (!data.is_string())
            return failure(
                Exit::Connection, "protocol error: the screendump reply has no \"data\"");
        auto bytes = base64_decode(data.get_ref<const std::string&>());
        if (!bytes)
            return failure(
                Exit::Connection, "protocol error: the screendump \"data\" is not base64");
        if (auto written = display::capture::write_file(args.file, *bytes); !written)
            return failure(Exit::Failed, "{}", written.error().message);
        // The picture is in the file now; the JSON output says where instead of repeating it.
        reply.erase("data");
        reply["filename"] = args.file;
        reply["bytes"] = bytes->size();
    }
    context.show(reply, [&](const json& value) {
        const json& name = field(value, "filename");
        return fmt::format("{}: {}x{} {}\n", name.is_string() ? text(name) : args.file,
            text(field(value, "width")), text(field(value, "height")),
            text(field(value, "format")));
    });
    return {};
}

CtlResult<void> cmd_crc_simple(Context& context, std::string_view command)
{
    uint32_t output = TRY(output_index(context.args()));
    auto value = TRY(context.execute(command, { { "output", output } }));
    if (command == "crc-start")
        context.show(value, nothing);
    else
        context.show(value, [](const json& v) { return format_crc_entries(v); });
    return {};
}

// One followed CRC entry, as a line of text or (--json) the event's data.
bool print_crc_entry(const Context& context, json entry, uint32_t output)
{
    if (context.json_output()) {
        if (entry.is_object() && !entry.contains("output"))
            entry["output"] = output;
        return print(dump(entry) + "\n", true);
    }
    return print(crc_line(entry) + "\n", true);
}

bool is_crc_of(const json& event, uint32_t output)
{
    return field(event, "event") == "CRC" && field(field(event, "data"), "output") == output;
}

std::optional<uint64_t> frame_of(const json& entry)
{
    if (const json& frame = field(entry, "frame"); frame.is_number_unsigned())
        return frame.get<uint64_t>();
    return std::nullopt;
}

// crc OUTPUT --follow: subscribe, start, print entries as they come; on SIGINT/SIGTERM (or after
// --count entries, or when stdout closes) stop capture and exit 0.
CtlResult<void> cmd_crc_follow(Context& context)
{
    const Args& args = context.args();
    uint32_t output = TRY(output_index(args));
    if (!args.follow)
        return failure(Exit::Usage,
            "crc: --follow is required (crc-start, crc-read and crc-stop work one step at a time)");
    auto count = TRY(count_argument(args));
    auto signals = TRY(SignalWatch::create());
    auto* connection = TRY(context.connection());
    TRY(connection->execute("subscribe", { { "events", { "CRC" } } }));
    TRY(connection->execute("crc-start", { { "output", output } }));

    std::optional<uint64_t> last_frame;
    uint64_t printed = 0;
    bool interrupted = false;
    while (!count || printed < *count) {
        auto event = TRY(connection->next_event(signals->fd()));
        if (!event) {
            interrupted = true;
            break;
        }
        report_dropped(*event);
        if (!is_crc_of(*event, output))
            continue;
        const json& data = field(*event, "data");
        if (!print_crc_entry(context, data, output))
            break;
        last_frame = frame_of(data).value_or(last_frame.value_or(0));
        ++printed;
    }
    signals->release();
    auto stopped = TRY(connection->execute("crc-stop", { { "output", output } }));
    // Entries captured before the stop whose events had not arrived yet: the stop reply has them.
    if (const json& entries = field(stopped, "entries"); interrupted && entries.is_array()) {
        for (const auto& entry : entries) {
            auto frame = frame_of(entry);
            if ((last_frame && frame && *frame <= *last_frame) || (count && printed >= *count))
                continue;
            if (!print_crc_entry(context, entry, output))
                break;
            ++printed;
        }
    }
    return {};
}

CtlResult<void> cmd_events(Context& context)
{
    const Args& args = context.args();
    auto count = TRY(count_argument(args));
    json names = json::array();
    for (auto name : args.events) {
        for (auto& c : name)
            c = char(std::toupper(static_cast<unsigned char>(c)));
        names.push_back(name);
    }
    if (names.empty())
        names = { "FLIP", "MODE_CHANGE", "CRC" };
    auto signals = TRY(SignalWatch::create());
    auto* connection = TRY(context.connection());
    TRY(connection->execute("subscribe", { { "events", names } }));
    for (uint64_t printed = 0; !count || printed < *count; ++printed) {
        auto event = TRY(connection->next_event(signals->fd()));
        if (!event)
            break;
        report_dropped(*event);
        if (!print(dump(*event) + "\n", true))
            break;
    }
    return {};
}

CtlResult<void> cmd_output_add(Context& context)
{
    auto mode = TRY(mode_argument(context.args()));
    auto value = TRY(
        context.execute("output-add", { { "width", mode.width }, { "height", mode.height } }));
    context.show(
        value, [](const json& v) { return fmt::format("output {}\n", text(field(v, "output"))); });
    return {};
}

CtlResult<void> cmd_output_remove(Context& context)
{
    uint32_t output = TRY(output_index(context.args()));
    auto value = TRY(context.execute("output-remove", { { "output", output } }));
    context.show(value, nothing);
    return {};
}

CtlResult<void> cmd_output_resize(Context& context)
{
    uint32_t output = TRY(output_index(context.args()));
    auto mode = TRY(mode_argument(context.args()));
    auto value = TRY(context.execute("output-resize",
        { { "output", output }, { "width", mode.width }, { "height", mode.height } }));
    context.show(value, nothing);
    return {};
}

// Needs no backend: the CRC that capture reports for a frame showing this picture.
CtlResult<void> cmd_crc_file(Context& context)
{
    auto image = display::capture::read_image(context.args().file);
    if (!image)
        return failure(Exit::Failed, "{}", image.error().message);
    uint32_t crc = display::capture::image_crc(*image);
    if (context.json_output())
        print(dump(json { { "width", image->width }, { "height", image->height }, { "crc", crc } })
            + "\n");
    else
        print(fmt::format("0x{:08x}\n", crc));
    return {};
}

// ---- the export socket and its leases

std::chrono::milliseconds timeout_of(const Args& args)
{
    return std::chrono::milliseconds(int64_t(args.timeout_seconds * 1000));
}

CtlResult<void> cmd_planes(Context& context)
{
    const Args& args = context.args();
    return export_planes(args.export_path, args.json, timeout_of(args),
        [](std::string_view text) { return print(text, true); });
}

// watch OUTPUT: lease it and print its records until Ctrl-C, --count flips, or a closed stdout.
CtlResult<void> cmd_watch(Context& context)
{
    const Args& args = context.args();
    WatchOptions options;
    options.output = TRY(output_index(args));
    options.exclusive = args.exclusive;
    options.flips = TRY(count_argument(args));
    options.json = args.json;
    auto signals = TRY(SignalWatch::create());
    options.interrupt_fd = signals->fd();
    return export_watch(args.export_path, options, timeout_of(args),
        [](std::string_view text) { return print(text, true); });
}

std::string format_leases(const json& value)
{
    if (!value.is_array() || value.empty())
        return "no leases\n";
    std::string out;
    for (const auto& l : value)
        out += fmt::format("lease {} output {} {} {} consumer {} pid {} acked {} queued {}\n",
            text(field(l, "lease")), text(field(l, "output")), text(field(l, "kind")),
            text(field(l, "plane-type")), text(field(l, "consumer")), text(field(l, "pid")),
            text(field(l, "generation-acked")), text(field(l, "queued")));
    return out;
}

CtlResult<void> cmd_lease_revoke(Context& context)
{
    auto lease = parse_index(context.args().lease);
    if (!lease)
        return failure(Exit::Usage, "LEASE: {}", lease.error().message);
    auto value = TRY(context.execute("lease-revoke", { { "lease", *lease } }));
    context.show(value, nothing);
    return {};
}

CtlResult<void> cmd_list(Context& context)
{
    auto backends = find_backends();
    if (context.json_output())
        print(dump(backends_json(backends)) + "\n");
    else
        print(format_backends(backends));
    return {};
}

CtlResult<void> cmd_raw(Context& context)
{
    auto request = json::parse(context.args().raw, nullptr, false);
    if (request.is_discarded() || !request.is_object())
        return failure(Exit::Usage,
            "raw: the request must be a JSON object, such as '{{\"execute\": \"query-version\"}}'");
    auto* connection = TRY(context.connection());
    auto reply = TRY(connection->exchange(std::move(request)));
    print(dump(reply, context.json_output() ? -1 : 2) + "\n");
    if (const json& error = field(reply, "error"); !error.is_null())
        return Failure { Exit::Failed, describe_error(error) };
    return {};
}

// ---- wiring
// --------------------------------------------------------------------------------------

using Command = std::function<CtlResult<void>(Context&)>;

CLI::App* output_subcommand(CLI::App& cli, Args& args, const char* name, const char* help)
{
    auto* sub = cli.add_subcommand(name, help);
    sub->add_option("OUTPUT", args.output, "the output (scanout) index")
        ->required()
        ->type_name("INDEX");
    return sub;
}

std::vector<std::pair<CLI::App*, Command>> define_commands(CLI::App& cli, Args& args)
{
    std::vector<std::pair<CLI::App*, Command>> commands;
    auto query = [&](const char* name, const char* command, std::string (*human)(const json&),
                     const char* help) {
        commands.emplace_back(cli.add_subcommand(name, help),
            [command, human](Context& c) { return cmd_query(c, command, human); });
    };
    query("version", "query-version", format_version, "the backend's version");
    query("capabilities", "query-capabilities", format_key_values,
        "commands, events, CRC parameters and screendump formats");
    query("outputs", "query-outputs", format_outputs,
        "the outputs (scanouts): mode, resource, frame counters, CRC capture");
    query(
        "resources", "query-resources", format_key_values, "guest resources and their host memory");
    query("stats", "query-stats", format_stats, "device counters and the flip latency histogram");

    auto* screendump = output_subcommand(cli, args, "screendump",
        "save what an output shows as PNG or PPM (the backend writes FILE)");
    screendump->add_option("FILE", args.file, "the file: .png or .ppm")->required();
    screendump->add_flag(
        "--inline", args.inline_data, "receive the image over the socket and write FILE here");
    screendump->add_option("--format", args.format, "png or ppm (default: from FILE's extension)")
        ->check(CLI::IsMember({ "png", "ppm" }));
    commands.emplace_back(screendump, cmd_screendump);

    for (const char* name : { "crc-start", "crc-read", "crc-stop" }) {
        const char* help = name == std::string_view("crc-start")
            ? "start CRC capture on an output (clears its ring)"
            : name == std::string_view("crc-read")
            ? "print the CRC entries captured since the last read (DRM debugfs lines)"
            : "print the remaining CRC entries and stop capture";
        commands.emplace_back(output_subcommand(cli, args, name, help),
            [name](Context& c) { return cmd_crc_simple(c, name); });
    }
    auto* crc = output_subcommand(cli, args, "crc",
        "capture CRCs and print each entry as it comes (with --follow), until Ctrl-C");
    crc->add_flag("--follow", args.follow, "print entries as they arrive (required)");
    crc->add_option("--count", args.count, "stop after N entries")->type_name("N");
    commands.emplace_back(crc, cmd_crc_follow);

    auto* events = cli.add_subcommand("events",
        "print events as JSON lines until Ctrl-C (default: all of FLIP, MODE_CHANGE, CRC)");
    events->add_option("NAME", args.events, "event names");
    events->add_option("--count", args.count, "stop after N events")->type_name("N");
    commands.emplace_back(events, cmd_events);

    auto* add = cli.add_subcommand("output-add", "hotplug an output (the first unplugged slot)");
    add->add_option("MODE", args.mode, "WIDTHxHEIGHT, such as 1280x800")->required();
    commands.emplace_back(add, cmd_output_add);
    commands.emplace_back(
        output_subcommand(cli, args, "output-remove", "unplug an output"), cmd_output_remove);
    auto* resize = output_subcommand(cli, args, "output-resize", "change an output's mode");
    resize->add_option("MODE", args.mode, "WIDTHxHEIGHT, such as 1280x800")->required();
    commands.emplace_back(resize, cmd_output_resize);

    auto* crc_file = cli.add_subcommand(
        "crc-file", "the capture CRC of a PNG or PPM image (needs no backend)");
    crc_file->add_option("IMAGE", args.file, "a PNG or binary PPM file")->required();
    commands.emplace_back(crc_file, cmd_crc_file);

    auto add_export = [&](CLI::App* sub) {
        sub->add_option("--export", args.export_path,
               "the backend's export socket (vgpu-display --export PATH)")
            ->envname("VGPU_EXPORT");
    };
    auto* planes = cli.add_subcommand(
        "planes", "probe the export socket: protocol, plane types, outputs (needs no lease)");
    add_export(planes);
    commands.emplace_back(planes, cmd_planes);
    auto* watch = output_subcommand(cli, args, "watch",
        "lease an output on the export socket and print its records (flips, CRCs, buffers)");
    add_export(watch);
    watch->add_flag("--exclusive", args.exclusive, "take the exclusive lease (default: shared)");
    watch->add_option("--count", args.count, "stop after N flips")->type_name("N");
    commands.emplace_back(watch, cmd_watch);
    commands.emplace_back(cli.add_subcommand("leases", "the export socket's leases"),
        [](Context& c) { return cmd_query(c, "lease-list", format_leases); });
    auto* revoke = cli.add_subcommand("lease-revoke", "revoke an export lease");
    revoke->add_option("LEASE", args.lease, "the lease id (see leases)")->required();
    commands.emplace_back(revoke, cmd_lease_revoke);

    commands.emplace_back(cli.add_subcommand("list",
                              "the running backends: pid, libvirt domain, video device, program "
                              "and control socket (needs no backend)"),
        cmd_list);

    auto* raw = cli.add_subcommand("raw", "send a request object and print the reply");
    raw->add_option("JSON", args.raw, "the request, such as '{\"execute\": \"query-stats\"}'")
        ->required();
    commands.emplace_back(raw, cmd_raw);
    return commands;
}

std::string with_newline(std::string text)
{
    if (!text.empty() && text.back() != '\n')
        text += '\n';
    return text;
}

std::string one_line(std::string text)
{
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
        text.pop_back();
    for (auto& c : text)
        if (c == '\n')
            c = ' ';
    return text;
}

CtlResult<void> run(int argc, char** argv)
{
    Args args;
    CLI::App cli { "vgpu-ctl: the command-line client of vgpu-display's control socket",
        "vgpu-ctl" };
    cli.add_option(
           "--control", args.control, "the backend's control socket (vgpu-display --control PATH)")
        ->envname("VGPU_CONTROL");
    cli.add_option("--domain", args.domain,
        "the backend of this libvirt domain (found through libvirt's pid files and the backends' "
        "records; see vgpu-ctl list) instead of --control");
    cli.add_flag("--json", args.json, "print the reply's value as JSON");
    cli.add_option("--timeout", args.timeout_seconds,
           "seconds to wait for the greeting and each reply (default 30)")
        ->check(CLI::Range(0.001, 86400.0));
    // Extras are collected rather than refused, so that we can say which word was wrong.
    cli.allow_extras();
    cli.fallthrough();
    cli.footer("Exit codes: 0 success; 1 the server answered an error, or a local step failed; 2 "
               "bad command line;\n"
               "3 cannot connect, connection lost, no reply in time or protocol error.");
    auto commands = define_commands(cli, args);
    try {
        cli.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        print(with_newline(cli.help()));
        return {};
    } catch (const CLI::CallForAllHelp&) {
        print(with_newline(cli.help("", CLI::AppFormatMode::All)));
        return {};
    } catch (const CLI::Error& e) {
        return failure(Exit::Usage, "{}", one_line(e.what()));
    }
    auto chosen = std::find_if(
        commands.begin(), commands.end(), [](const auto& c) { return c.first->parsed(); });
    auto extras = cli.remaining();
    if (!extras.empty()) {
        const auto& extra = extras.front();
        if (extra.starts_with("-"))
            return failure(Exit::Usage, "unknown option '{}' (see --help)", extra);
        if (chosen == commands.end())
            return failure(Exit::Usage, "unknown command '{}' (see --help)", extra);
        return failure(
            Exit::Usage, "{}: unexpected argument '{}'", chosen->first->get_name(), extra);
    }
    if (chosen == commands.end())
        return failure(Exit::Usage, "a command is required (see --help)");
    if (!args.domain.empty()) {
        if (cli.get_option("--control")->count() > 0)
            return failure(Exit::Usage, "--domain and --control name the backend twice: give one");
        auto backend = TRY(backend_of_domain(find_backends(), args.domain));
        args.control = *backend.control;
        if (args.export_path.empty() && backend.export_path)
            args.export_path = *backend.export_path;
    }
    Context context(args);
    return chosen->second(context);
}

} // namespace

} // namespace vgpu::ctl

namespace {
int checked_main(int argc, char** argv)
{
    using vgpu::ctl::Exit;
    ::signal(SIGPIPE, SIG_IGN); // a closed stdout or socket is an error return, not death
    auto result = vgpu::ctl::run(argc, argv);
    int code = result ? 0 : int(result.error().exit);
    if (!result && !result.error().message.empty())
        vgpu::ctl::warn(result.error().message);
    if ((std::fflush(stdout) != 0 || std::ferror(stdout)) && !vgpu::ctl::g_stdout_closed
        && errno != EPIPE) {
        vgpu::ctl::warn(fmt::format("stdout: {}", std::strerror(errno)));
        return code ? code : int(Exit::Failed);
    }
    return code;
}
} // namespace

int main(int argc, char** argv)
{
    // Library exceptions (bad_alloc) are fatal: one line and a failure exit.
    try {
        return checked_main(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vgpu-ctl: fatal: %s\n", e.what());
        return 1;
    }
}
