// vgpu-ctl without a backend: its formatting and argument parsing as functions, and the built
// binary run against image files, bad command lines, a missing socket and a fake server (a unix
// socket thread that greets and answers with canned lines).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "app/tools/ctl_format.h"
#include "base/fd.h"
#include "display/capture/image.h"
#include "harness/backend_process.h"

extern char** environ;

namespace vgpu::ctl {
namespace {

using namespace std::chrono_literals;

// ---- formatting and parsing
// ------------------------------------------------------------------------

TEST(ParseMode, WidthByHeight_Parsed)
{
    auto mode = parse_mode("1280x800");

    ASSERT_TRUE(mode);
    EXPECT_EQ(mode->width, 1280u);
    EXPECT_EQ(mode->height, 800u);
}

TEST(ParseMode, Malformed_Refused)
{
    for (const char* text : { "", "x", "1280", "1280x", "x800", "12by8", "-1x5", "1280x800x2",
             "99999999999x1", " 1x1" })
        EXPECT_FALSE(parse_mode(text)) << text;
}

TEST(ParseIndex, DecimalOnly)
{
    EXPECT_EQ(*parse_index("0"), 0u);
    EXPECT_EQ(*parse_index("4294967295"), 4294967295u);
    EXPECT_EQ(*parse_index("010"), 10u); // decimal, not octal
    for (const char* text : { "", "-1", "0x10", "4294967296", "1.5", "one" })
        EXPECT_FALSE(parse_index(text)) << text;
}

TEST(Base64Decode, Rfc4648Vectors)
{
    auto text = [](std::string_view encoded) {
        auto bytes = base64_decode(encoded);
        return bytes ? std::string(reinterpret_cast<const char*>(bytes->data()), bytes->size())
                     : std::string("<invalid>");
    };
    EXPECT_EQ(text(""), "");
    EXPECT_EQ(text("Zg=="), "f");
    EXPECT_EQ(text("Zm8="), "fo");
    EXPECT_EQ(text("Zm9v"), "foo");
    EXPECT_EQ(text("Zm9vYg=="), "foob");
    EXPECT_EQ(text("Zm9vYmE="), "fooba");
    EXPECT_EQ(text("Zm9vYmFy"), "foobar");
    EXPECT_EQ(text("Zm8"), "fo"); // padding optional
}

TEST(Base64Decode, Malformed_Refused)
{
    for (const char* text : { "Z", "Zm9v!", "Zg=", "Z===", "Zm 9v", "Zm==Zm==" })
        EXPECT_FALSE(base64_decode(text)) << text;
}

const json OUTPUTS = json::parse(R"([
    {"output": 0, "enabled": true, "width": 1280, "height": 800, "resource": 7, "format": "XRGB8888",
     "frames": 42, "flips": 40, "crc-capture": true},
    {"output": 1, "enabled": false, "width": 0, "height": 0, "resource": null, "format": null,
     "frames": 0, "flips": 0, "crc-capture": false}
])");

const std::string OUTPUTS_TABLE
    = "OUTPUT  ENABLED  SIZE      RESOURCE  FORMAT    FRAMES  FLIPS  CRC\n"
      "0       yes      1280x800  7         XRGB8888  42      40     on\n"
      "1       no       0x0       -         -         0       0      off\n";

TEST(FormatOutputs, Table) { EXPECT_EQ(format_outputs(OUTPUTS), OUTPUTS_TABLE); }

TEST(FormatOutputs, UnexpectedShapes_DoNotThrow)
{
    EXPECT_EQ(format_outputs(json::parse(R"([{"output": "zero", "width": [1]}, 5])")),
        "OUTPUT  ENABLED  SIZE  RESOURCE  FORMAT  FRAMES  FLIPS  CRC\n"
        "zero    -        1x-   -         -       -       -      -\n"
        "-       -        -x-   -         -       -       -      -\n");
    EXPECT_EQ(format_outputs(json("oops")), "oops\n");
}

const json STATS = json::parse(R"({
    "flips": 40, "flushes": 42, "bytes-copied": 3145728, "crc-entries": 0,
    "display": {"flips": 40, "qemu": {"updates": 12}},
    "flip-latency-us": {"buckets": [{"le": 1, "count": 0}, {"le": 2, "count": 10}, {"le": 4, "count": 30},
                                    {"le": "inf", "count": 2}], "count": 42, "sum": 150}
})");

const std::string STATS_TEXT = "bytes-copied:         3145728 (3.0 MiB)\n"
                               "crc-entries:          0\n"
                               "display.flips:        40\n"
                               "display.qemu.updates: 12\n"
                               "flips:                40\n"
                               "flushes:              42\n"
                               "flip-latency-us:      count 42, mean 3.6, p50 <= 4, p99 > 4\n"
                               "flip-latency-us <= 2: 10\n"
                               "flip-latency-us <= 4: 30\n"
                               "flip-latency-us > 4:  2\n";

TEST(FormatStats, CountersThenHistogram) { EXPECT_EQ(format_stats(STATS), STATS_TEXT); }

TEST(FormatKeyValues, NestedListsAndSizes)
{
    auto value = json::parse(R"({"type": "gpu", "features": [], "events": ["FLIP", "CRC"],
        "crc": {"algorithm": "crc32c", "ring": 128}, "max-bytes": 268435456})");

    EXPECT_EQ(format_key_values(value),
        "crc.algorithm: crc32c\n"
        "crc.ring:      128\n"
        "events:        FLIP, CRC\n"
        "features:      none\n"
        "max-bytes:     268435456 (256.0 MiB)\n"
        "type:          gpu\n");
    EXPECT_EQ(format_key_values(json::object()), "");
}

TEST(FormatCrcEntries, OverflowThenLines)
{
    auto value = json::parse(
        R"({"entries": [{"frame": 5, "crc": 2882400001, "line": "0x00000005 0xabcdef01"},
        {"frame": 6, "crc": 16}], "overflow": 3})");

    EXPECT_EQ(
        format_crc_entries(value), "overflow 3\n0x00000005 0xabcdef01\n0x00000006 0x00000010\n");
    EXPECT_EQ(format_crc_entries(value, 5), "0x00000006 0x00000010\n");
}

TEST(FormatVersion, PackageOrNumbers)
{
    EXPECT_EQ(format_version(json::parse(
                  R"({"major": 0, "minor": 1, "micro": 0, "package": "vgpu-display 0.1.0"})")),
        "vgpu-display 0.1.0\n");
    EXPECT_EQ(format_version(json::parse(R"({"major": 1, "minor": 2, "micro": 3})")), "1.2.3\n");
}

// ---- running the binary
// --------------------------------------------------------------------------

std::string slurp(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

size_t count_lines(const std::string& text)
{
    return size_t(std::count(text.begin(), text.end(), '\n'));
}

struct Finished {
    int code = -1;
    std::string out;
    std::string err;
};

// vgpu-ctl running in the background, its stdout and stderr going to files.
class Child {
public:
    Child(
        const std::string& dir, std::vector<std::string> args, const std::vector<std::string>& env)
        : m_out(dir + "/stdout")
        , m_err(dir + "/stderr")
    {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(
            &actions, STDOUT_FILENO, m_out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_addopen(
            &actions, STDERR_FILENO, m_err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        args.insert(args.begin(), VGPU_CTL_BINARY);
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        // Our environment without VGPU_CONTROL, plus `env`.
        std::vector<std::string> environment;
        for (char** e = environ; *e; ++e)
            if (std::strncmp(*e, "VGPU_CONTROL=", 13) != 0)
                environment.emplace_back(*e);
        environment.insert(environment.end(), env.begin(), env.end());
        std::vector<char*> envp;
        for (auto& e : environment)
            envp.push_back(e.data());
        envp.push_back(nullptr);
        int rc = ::posix_spawn(
            &m_pid, VGPU_CTL_BINARY, &actions, nullptr, argv.data(), envp.data());
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0)
            m_pid = -1;
    }
    ~Child()
    {
        if (m_pid > 0) {
            ::kill(m_pid, SIGKILL);
            ::waitpid(m_pid, nullptr, 0);
        }
    }
    pid_t pid() const { return m_pid; }
    std::string out() const { return slurp(m_out); }

    Finished wait(std::chrono::milliseconds timeout = 10s)
    {
        Finished result;
        auto deadline = std::chrono::steady_clock::now() + timeout;
        int status = 0;
        while (m_pid > 0) {
            pid_t done = ::waitpid(m_pid, &status, WNOHANG);
            if (done == m_pid) {
                m_pid = -1;
                result.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                break;
            }
            if (std::chrono::steady_clock::now() > deadline) {
                ADD_FAILURE() << "vgpu-ctl did not exit in time";
                break;
            }
            std::this_thread::sleep_for(5ms);
        }
        result.out = slurp(m_out);
        result.err = slurp(m_err);
        return result;
    }

private:
    pid_t m_pid = -1;
    std::string m_out;
    std::string m_err;
};

// A control socket that greets and answers each request with the lines `handler` returns
// (replies, events, or anything else). It records the requests.
class FakeServer {
public:
    using Handler = std::function<std::vector<std::string>(const json& request)>;
    static constexpr const char* GREETING
        = R"({"QMP": {"version": {"vgpu-display": {"major": 0, "minor": 1, "micro": 0}, )"
          R"("package": "vgpu-display 0.1.0"}, "capabilities": ["events"]}})";

    FakeServer(const std::string& path, Handler handler, std::string greeting = GREETING)
        : m_path(path)
        , m_handler(std::move(handler))
        , m_greeting(std::move(greeting))
    {
        m_listen = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un address {};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
        if (::bind(m_listen.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0
            || ::listen(m_listen.get(), 4) < 0)
            ADD_FAILURE() << "cannot listen on " << path << ": " << std::strerror(errno);
        m_thread = std::thread([this] { serve(); });
    }
    ~FakeServer()
    {
        m_stop = true;
        m_thread.join();
    }
    std::vector<json> requests()
    {
        std::lock_guard lock(m_mutex);
        return m_requests;
    }
    std::vector<std::string> commands()
    {
        std::vector<std::string> names;
        for (const auto& r : requests())
            names.push_back(r.value("execute", ""));
        return names;
    }

    // A reply echoing the request's id.
    static std::string reply(const json& request, const json& value)
    {
        json message = { { "return", value } };
        if (request.contains("id"))
            message["id"] = request["id"];
        return message.dump();
    }
    static std::string error(
        const json& request, const std::string& error_class, const std::string& desc)
    {
        json message = { { "error", { { "class", error_class }, { "desc", desc } } } };
        if (request.contains("id"))
            message["id"] = request["id"];
        return message.dump();
    }

private:
    static void send_all(int fd, const std::string& text)
    {
        size_t done = 0;
        while (done < text.size()) {
            ssize_t n = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
            if (n <= 0)
                return;
            done += size_t(n);
        }
    }

    void serve()
    {
        Fd client;
        std::string in;
        while (!m_stop) {
            pollfd fds[2] = { { m_listen.get(), POLLIN, 0 }, { client.get(), POLLIN, 0 } };
            if (::poll(fds, client ? 2 : 1, 20) <= 0)
                continue;
            if (fds[0].revents & POLLIN) {
                client = Fd(::accept4(m_listen.get(), nullptr, nullptr, SOCK_CLOEXEC));
                in.clear();
                if (!m_greeting.empty())
                    send_all(client.get(), m_greeting + "\n");
                continue;
            }
            if (!client || !(fds[1].revents & (POLLIN | POLLHUP)))
                continue;
            char buffer[4096];
            ssize_t n = ::recv(client.get(), buffer, sizeof(buffer), 0);
            if (n <= 0) {
                client.reset();
                continue;
            }
            in.append(buffer, size_t(n));
            for (auto newline = in.find('\n'); newline != std::string::npos;
                 newline = in.find('\n')) {
                auto request = json::parse(in.substr(0, newline), nullptr, false);
                in.erase(0, newline + 1);
                {
                    std::lock_guard lock(m_mutex);
                    m_requests.push_back(request);
                }
                for (const auto& line : m_handler(request)) {
                    if (line == CLOSE) {
                        client.reset();
                        break;
                    }
                    send_all(client.get(), line + "\n");
                }
                if (!client)
                    break;
            }
        }
    }

public:
    static constexpr const char* CLOSE = "<close>"; // a handler line that hangs up instead

private:
    std::string m_path;
    Handler m_handler;
    std::string m_greeting;
    Fd m_listen;
    std::thread m_thread;
    std::atomic<bool> m_stop { false };
    std::mutex m_mutex;
    std::vector<json> m_requests;
};

// Canned answers to the queries, like the real server's.
std::vector<std::string> canned(const json& request)
{
    std::string name = request.value("execute", "");
    if (name == "query-outputs")
        return { FakeServer::reply(request, OUTPUTS) };
    if (name == "query-stats")
        return { FakeServer::reply(request, STATS) };
    if (name == "query-version")
        return { FakeServer::reply(request,
            { { "major", 0 }, { "minor", 1 }, { "micro", 0 },
                { "package", "vgpu-display 0.1.0" } }) };
    if (name == "output-add")
        return { FakeServer::reply(request, { { "output", 1 } }) };
    if (name == "crc-read")
        return {
            FakeServer::reply(request,
                json::parse(
                    R"({"entries": [{"frame": 9, "crc": 1, "line": "0x00000009 0x00000001"}],
                                                           "lines": "overflow 2\n0x00000009 0x00000001\n", "overflow": 2})"))
        };
    if (name == "crc-start" || name == "subscribe" || name == "output-remove"
        || name == "output-resize")
        return { FakeServer::reply(request, json::object()) };
    return { FakeServer::error(
        request, "CommandNotFound", "The command " + name + " has not been found") };
}

class VgpuCtlTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        m_dir = harness::make_temp_dir();
        m_socket = m_dir + "/control.sock";
    }
    void TearDown() override { std::filesystem::remove_all(m_dir); }

    Finished run(std::vector<std::string> args, const std::vector<std::string>& env = {})
    {
        return Child(m_dir, std::move(args), env).wait();
    }
    // Runs against the socket.
    Finished ctl(std::vector<std::string> args)
    {
        args.insert(args.begin(), { "--control", m_socket });
        return run(std::move(args));
    }
    std::string write_image(const std::string& name, const display::capture::Image& image)
    {
        auto bytes = name.ends_with(".png") ? display::capture::encode_png(image)
                                            : display::capture::encode_ppm(image);
        EXPECT_TRUE(bytes);
        EXPECT_TRUE(display::capture::write_file(m_dir + "/" + name, *bytes));
        return m_dir + "/" + name;
    }

    std::string m_dir;
    std::string m_socket;
};

display::capture::Image test_image()
{
    display::capture::Image image { 31, 17, {} };
    for (uint32_t i = 0; i < 31 * 17; ++i)
        image.pixels.push_back((i * 2654435761u) & 0xFFFFFF);
    return image;
}

// ---- crc-file
// --------------------------------------------------------------------------------------

TEST_F(VgpuCtlTest, CrcFile_PngAndPpm_SameValueAsImageCrc)
{
    auto image = test_image();
    auto png = write_image("a.png", image);
    auto ppm = write_image("a.ppm", image);

    auto from_png = run({ "crc-file", png });
    auto from_ppm = run({ "crc-file", ppm });

    EXPECT_EQ(from_png.code, 0) << from_png.err;
    EXPECT_EQ(from_ppm.code, 0) << from_ppm.err;
    EXPECT_EQ(from_png.out, fmt::format("0x{:08x}\n", display::capture::image_crc(image)));
    EXPECT_EQ(from_png.out, from_ppm.out);
    EXPECT_EQ(from_png.err, "");
}

TEST_F(VgpuCtlTest, CrcFile_Json_WidthHeightCrc)
{
    auto image = test_image();
    auto png = write_image("a.png", image);

    auto result = run({ "crc-file", png, "--json" });

    EXPECT_EQ(result.code, 0);
    EXPECT_EQ(json::parse(result.out),
        (json {
            { "width", 31 }, { "height", 17 }, { "crc", display::capture::image_crc(image) } }));
}

TEST_F(VgpuCtlTest, CrcFile_Garbage_Exit1OneLine)
{
    std::ofstream(m_dir + "/junk.png") << "not an image at all";

    auto result = run({ "crc-file", m_dir + "/junk.png" });

    EXPECT_EQ(result.code, 1);
    EXPECT_EQ(result.out, "");
    EXPECT_EQ(result.err, "vgpu-ctl: " + m_dir + "/junk.png: neither PNG nor binary PPM (P6)\n");
}

TEST_F(VgpuCtlTest, CrcFile_TruncatedPng_Exit1)
{
    auto bytes = *display::capture::encode_png(test_image());
    bytes.resize(bytes.size() - 10);
    ASSERT_TRUE(display::capture::write_file(m_dir + "/short.png", bytes));

    auto result = run({ "crc-file", m_dir + "/short.png" });

    EXPECT_EQ(result.code, 1);
    EXPECT_EQ(count_lines(result.err), 1u) << result.err;
    EXPECT_NE(result.err.find("unreadable PNG"), std::string::npos) << result.err;
}

TEST_F(VgpuCtlTest, CrcFile_Missing_Exit1)
{
    auto result = run({ "crc-file", m_dir + "/missing.ppm" });

    EXPECT_EQ(result.code, 1);
    EXPECT_EQ(result.err, "vgpu-ctl: " + m_dir + "/missing.ppm: No such file or directory\n");
}

// ---- bad command lines, no server
// --------------------------------------------------------------------

TEST_F(VgpuCtlTest, BadCommandLines_Exit2WithOneLine)
{
    const std::vector<std::vector<std::string>> lines = {
        {},
        { "frobnicate" },
        { "--bogus", "outputs" },
        { "outputs", "extra" },
        { "crc-start" },
        { "crc-start", "zero" },
        { "crc-start", "0", "1" },
        { "output-add", "12by34" },
        { "output-resize", "0", "640" },
        { "screendump", "0", "shot.bmp" },
        { "screendump", "0", "shot.png", "--format", "gif" },
        { "crc", "0" },
        { "crc", "0", "--follow", "--count", "0" },
        { "raw", "{not json" },
        { "raw", "[1, 2]" },
        { "crc-file" },
        { "--timeout", "-1", "outputs" },
    };
    for (const auto& args : lines) {
        std::vector<std::string> with_socket = args;
        with_socket.insert(with_socket.begin(), { "--control", m_socket });

        auto result = run(with_socket);

        std::string shown = fmt::format("{}", fmt::join(args, " "));
        EXPECT_EQ(result.code, 2) << shown << ": " << result.err;
        EXPECT_EQ(count_lines(result.err), 1u) << shown << ": " << result.err;
        EXPECT_EQ(result.err.rfind("vgpu-ctl: ", 0), 0u) << shown << ": " << result.err;
        EXPECT_EQ(result.out, "") << shown;
    }
}

TEST_F(VgpuCtlTest, NoControlSocketGiven_Exit2)
{
    auto result = run({ "outputs" });

    EXPECT_EQ(result.code, 2);
    EXPECT_EQ(result.err, "vgpu-ctl: no control socket: give --control PATH or set VGPU_CONTROL\n");
}

TEST_F(VgpuCtlTest, Help_Exit0)
{
    auto result = run({ "--help" });

    EXPECT_EQ(result.code, 0);
    EXPECT_NE(result.out.find("crc-file"), std::string::npos);
}

TEST_F(VgpuCtlTest, NoServerAtPath_Exit3)
{
    auto result = ctl({ "outputs" });

    EXPECT_EQ(result.code, 3);
    EXPECT_EQ(
        result.err, "vgpu-ctl: cannot connect to " + m_socket + ": No such file or directory\n");
}

TEST_F(VgpuCtlTest, StaleSocketFile_Exit3)
{
    {
        Fd s(::socket(AF_UNIX, SOCK_STREAM, 0));
        sockaddr_un address {};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, m_socket.c_str(), sizeof(address.sun_path) - 1);
        ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    } // closed without listening: the file stays, nobody answers

    auto result = ctl({ "stats" });

    EXPECT_EQ(result.code, 3);
    EXPECT_EQ(result.err, "vgpu-ctl: cannot connect to " + m_socket + ": Connection refused\n");
}

// ---- against a fake server
// ----------------------------------------------------------------------------

TEST_F(VgpuCtlTest, Outputs_Human_Table)
{
    FakeServer server(m_socket, canned);

    auto result = ctl({ "outputs" });

    EXPECT_EQ(result.code, 0) << result.err;
    EXPECT_EQ(result.out, OUTPUTS_TABLE);
    EXPECT_EQ(server.commands(), std::vector<std::string> { "query-outputs" });
}

TEST_F(VgpuCtlTest, Outputs_Json_TheReturnValue)
{
    FakeServer server(m_socket, canned);

    auto result = ctl({ "outputs", "--json" });

    EXPECT_EQ(result.code, 0) << result.err;
    EXPECT_EQ(count_lines(result.out), 1u);
    EXPECT_EQ(json::parse(result.out), OUTPUTS);
}

TEST_F(VgpuCtlTest, Stats_HumanAndJson)
{
    FakeServer server(m_socket, canned);

    auto human = ctl({ "stats" });
    auto as_json = ctl({ "--json", "stats" });

    EXPECT_EQ(human.code, 0) << human.err;
    EXPECT_EQ(human.out, STATS_TEXT);
    EXPECT_EQ(as_json.code, 0) << as_json.err;
    EXPECT_EQ(json::parse(as_json.out), STATS);
}

TEST_F(VgpuCtlTest, ControlFromEnvironment)
{
    FakeServer server(m_socket, canned);

    auto result = run({ "version" }, { "VGPU_CONTROL=" + m_socket });

    EXPECT_EQ(result.code, 0) << result.err;
    EXPECT_EQ(result.out, "vgpu-display 0.1.0\n");
}

TEST_F(VgpuCtlTest, ErrorReply_Exit1ClassAndDescOnStderr)
{
    FakeServer server(m_socket, [](const json& request) {
        return std::vector<std::string> { FakeServer::error(
            request, "DeviceNotActive", "output 3 is disabled") };
    });

    auto result = ctl({ "crc-start", "3" });

    EXPECT_EQ(result.code, 1);
    EXPECT_EQ(result.out, "");
    EXPECT_EQ(result.err, "vgpu-ctl: DeviceNotActive: output 3 is disabled\n");
    ASSERT_EQ(server.requests().size(), 1u);
    EXPECT_EQ(server.requests()[0]["arguments"], (json { { "output", 3 } }));
}

TEST_F(VgpuCtlTest, Reply_MatchedById_StaleRepliesAndEventsSkipped)
{
    FakeServer server(m_socket, [](const json& request) {
        json stale = { { "return", json::array() }, { "id", "somebody-else" } };
        json no_id = { { "error", { { "class", "GenericError" }, { "desc", "bad JSON" } } } };
        json event = { { "event", "FLIP" }, { "data", { { "output", 0 }, { "frame", 1 } } } };
        return std::vector<std::string> { stale.dump(), no_id.dump(), event.dump(),
            canned(request)[0] };
    });

    auto result = ctl({ "outputs" });

    EXPECT_EQ(result.code, 0) << result.err;
    EXPECT_EQ(result.out, OUTPUTS_TABLE);
}

TEST_F(VgpuCtlTest, GreetingNotQmp_Exit3)
{
    FakeServer server(m_socket, canned, "hello there");

    auto result = ctl({ "outputs" });

    EXPECT_EQ(result.code, 3);
    EXPECT_EQ(
        result.err, "vgpu-ctl: protocol error: " + m_socket + " sent a line that is not JSON\n");
}

TEST_F(VgpuCtlTest, ServerHangsUpInsteadOfReplying_Exit3)
{
    FakeServer server(
        m_socket, [](const json&) { return std::vector<std::string> { FakeServer::CLOSE }; });

    auto result = ctl({ "outputs" });

    EXPECT_EQ(result.code, 3);
    EXPECT_EQ(result.err, "vgpu-ctl: connection closed by " + m_socket + "\n");
}

TEST_F(VgpuCtlTest, NoReplyInTime_Exit3)
{
    FakeServer server(m_socket, [](const json&) { return std::vector<std::string> {}; });

    auto result = ctl({ "--timeout", "0.2", "outputs" });

    EXPECT_EQ(result.code, 3);
    EXPECT_EQ(result.err, "vgpu-ctl: no reply from " + m_socket + " within 200 ms\n");
}

TEST_F(VgpuCtlTest, CrcRead_OverflowThenLines)
{
    FakeServer server(m_socket, canned);

    auto result = ctl({ "crc-read", "0" });

    EXPECT_EQ(result.code, 0) << result.err;
    EXPECT_EQ(result.out, "overflow 2\n0x00000009 0x00000001\n");
}

TEST_F(VgpuCtlTest, OutputAdd_SendsModePrintsIndex)
{
    FakeServer server(m_socket, canned);

    auto result = ctl({ "output-add", "1024x768" });

    EXPECT_EQ(result.code, 0) << result.err;
    EXPECT_EQ(result.out, "output 1\n");
    EXPECT_EQ(
        server.requests().at(0)["arguments"], (json { { "width", 1024 }, { "height", 768 } }));
}

TEST_F(VgpuCtlTest, Screendump_SendsAbsolutePath)
{
    FakeServer server(m_socket, [](const json& request) {
        const auto& a = request["arguments"];
        return std::vector<std::string> { FakeServer::reply(request,
            { { "filename", a["filename"] }, { "width", 640 }, { "height", 480 },
                { "format", a["format"] } }) };
    });

    auto result = ctl({ "screendump", "1", "shots/../Shot.PNG" });

    EXPECT_EQ(result.code, 0) << result.err;
    auto cwd = std::filesystem::current_path().string();
    EXPECT_EQ(server.requests().at(0)["arguments"],
        (json { { "output", 1 }, { "format", "png" }, { "filename", cwd + "/Shot.PNG" } }));
    EXPECT_EQ(result.out, cwd + "/Shot.PNG: 640x480 png\n");
}

TEST_F(VgpuCtlTest, ScreendumpInline_WritesTheDecodedFileHere)
{
    auto image = test_image();
    auto ppm = *display::capture::encode_ppm(image);
    static constexpr char alphabet[]
        = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string base64;
    for (size_t i = 0; i < ppm.size(); i += 3) {
        uint32_t chunk = uint32_t(ppm[i]) << 16;
        if (i + 1 < ppm.size())
            chunk |= uint32_t(ppm[i + 1]) << 8;
        if (i + 2 < ppm.size())
            chunk |= uint32_t(ppm[i + 2]);
        base64 += alphabet[(chunk >> 18) & 63];
        base64 += alphabet[(chunk >> 12) & 63];
        base64 += i + 1 < ppm.size() ? alphabet[(chunk >> 6) & 63] : '=';
        base64 += i + 2 < ppm.size() ? alphabet[chunk & 63] : '=';
    }
    FakeServer server(m_socket, [&](const json& request) {
        return std::vector<std::string> { FakeServer::reply(request,
            { { "width", 31 }, { "height", 17 }, { "format", "ppm" }, { "data", base64 } }) };
    });
    std::string file = m_dir + "/here.ppm";

    auto result = ctl({ "screendump", "0", file, "--inline", "--json" });

    EXPECT_EQ(result.code, 0) << result.err;
    EXPECT_EQ(
        server.requests().at(0)["arguments"], (json { { "output", 0 }, { "format", "ppm" } }));
    auto read = display::capture::read_image(file);
    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read->pixels, image.pixels);
    EXPECT_EQ(json::parse(result.out),
        (json { { "width", 31 }, { "height", 17 }, { "format", "ppm" }, { "filename", file },
            { "bytes", ppm.size() } }));
}

TEST_F(VgpuCtlTest, Raw_KeepsItsIdPrintsTheReply)
{
    FakeServer server(m_socket, canned);

    auto ok = ctl({ "--json", "raw", R"({"execute": "query-version", "id": "mine"})" });
    auto failed = ctl({ "--json", "raw", R"({"execute": "nonsense"})" });

    EXPECT_EQ(ok.code, 0) << ok.err;
    EXPECT_EQ(json::parse(ok.out)["id"], "mine");
    EXPECT_EQ(json::parse(ok.out)["return"]["package"], "vgpu-display 0.1.0");
    EXPECT_EQ(failed.code, 1);
    EXPECT_EQ(json::parse(failed.out)["error"]["class"], "CommandNotFound");
    EXPECT_EQ(failed.err, "vgpu-ctl: CommandNotFound: The command nonsense has not been found\n");
}

std::string crc_event(
    uint32_t output, uint64_t frame, uint32_t crc, std::optional<uint64_t> dropped = std::nullopt)
{
    json event = { { "event", "CRC" },
        { "data",
            { { "output", output }, { "frame", frame }, { "crc", crc },
                { "line", display::capture::drm_crc_line(frame, crc) } } },
        { "timestamp", { { "seconds", 1 }, { "microseconds", 2 } } } };
    if (dropped)
        event["dropped"] = *dropped;
    return event.dump();
}

TEST_F(VgpuCtlTest, ListAndDomain_FromRecordsOnly_NamingWhatIsWrong)
{
    // A record of a live process that is not vgpu-display (a reused pid) is no backend.
    auto runtime = m_dir + "/run";
    std::filesystem::create_directories(runtime);
    std::ofstream(runtime + "/" + std::to_string(::getpid()) + ".json")
        << "{\"pid\": " << ::getpid() << ", \"domain\": \"web\", \"control\": \"/x\"}";
    std::vector<std::string> env { "VGPU_DISPLAY_RUNTIME_DIR=" + runtime };
    auto listed = run({ "--json", "list" }, env);
    EXPECT_EQ(listed.code, 0) << listed.err;
    auto backends = json::parse(listed.out, nullptr, false);
    ASSERT_TRUE(backends.is_array()) << listed.out;
    for (const auto& b : backends)
        EXPECT_NE(b.value("pid", 0), ::getpid()) << listed.out;
    auto missing = run({ "--domain", "web", "stats" }, env);
    EXPECT_EQ(missing.code, 3);
    EXPECT_EQ(missing.err,
        "vgpu-ctl: no backend runs for domain 'web' (vgpu-ctl list shows the running ones)\n");
    auto both = run({ "--domain", "web", "--control", m_socket, "stats" }, env);
    EXPECT_EQ(both.code, 2);
    EXPECT_EQ(both.err, "vgpu-ctl: --domain and --control name the backend twice: give one\n");
}

TEST_F(VgpuCtlTest, CrcFollow_PrintsEventsUntilSigint_ThenStopsAndPrintsTheRest)
{
    FakeServer server(m_socket, [](const json& request) {
        std::string name = request.value("execute", "");
        if (name == "crc-start")
            return std::vector<std::string> { FakeServer::reply(request, json::object()),
                crc_event(0, 1, 0x11), crc_event(1, 1, 0x99), crc_event(0, 2, 0x22, 5),
                crc_event(0, 3, 0x33) };
        if (name == "crc-stop") {
            json entries = json::array();
            for (uint64_t frame = 1; frame <= 4; ++frame)
                entries.push_back({ { "frame", frame }, { "crc", frame * 0x11 },
                    { "line", display::capture::drm_crc_line(frame, uint32_t(frame * 0x11)) } });
            return std::vector<std::string> { FakeServer::reply(
                request, { { "entries", entries }, { "overflow", 0 } }) };
        }
        return canned(request);
    });
    Child child(m_dir, { "--control", m_socket, "crc", "0", "--follow" }, {});
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (count_lines(child.out()) < 3 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);

    ::kill(child.pid(), SIGINT);
    auto result = child.wait();

    EXPECT_EQ(result.code, 0) << result.err;
    EXPECT_EQ(result.out,
        "0x00000001 0x00000011\n0x00000002 0x00000022\n0x00000003 0x00000033\n0x00000004 "
        "0x00000044\n");
    EXPECT_EQ(
        result.err, "vgpu-ctl: the server dropped 5 events for this client (it read too slowly)\n");
    EXPECT_EQ(
        server.commands(), (std::vector<std::string> { "subscribe", "crc-start", "crc-stop" }));
    EXPECT_EQ(server.requests().at(0)["arguments"], (json { { "events", { "CRC" } } }));
}

TEST_F(VgpuCtlTest, CrcFollowCount_StopsAfterN)
{
    FakeServer server(m_socket, [](const json& request) {
        std::string name = request.value("execute", "");
        if (name == "crc-start")
            return std::vector<std::string> { FakeServer::reply(request, json::object()),
                crc_event(0, 7, 1), crc_event(0, 8, 2), crc_event(0, 9, 3) };
        if (name == "crc-stop")
            return std::vector<std::string> { FakeServer::reply(
                request, { { "entries", json::array() }, { "overflow", 0 } }) };
        return canned(request);
    });

    auto result = ctl({ "crc", "0", "--follow", "--count", "2", "--json" });

    EXPECT_EQ(result.code, 0) << result.err;
    EXPECT_EQ(count_lines(result.out), 2u);
    EXPECT_EQ(json::parse(result.out.substr(0, result.out.find('\n')))["frame"], 7);
    EXPECT_EQ(
        server.commands(), (std::vector<std::string> { "subscribe", "crc-start", "crc-stop" }));
}

TEST_F(VgpuCtlTest, Events_SubscribesAndPrintsJsonLines)
{
    FakeServer server(m_socket, [](const json& request) {
        json flip = { { "event", "FLIP" },
            { "data", { { "output", 0 }, { "frame", 3 }, { "resource", 1 } } } };
        return std::vector<std::string> { FakeServer::reply(request, { { "events", { "FLIP" } } }),
            flip.dump(), flip.dump() };
    });

    auto result = ctl({ "events", "flip", "--count", "2" });

    EXPECT_EQ(result.code, 0) << result.err;
    EXPECT_EQ(count_lines(result.out), 2u);
    EXPECT_EQ(json::parse(result.out.substr(0, result.out.find('\n')))["event"], "FLIP");
    EXPECT_EQ(server.requests().at(0)["arguments"], (json { { "events", { "FLIP" } } }));
}

} // namespace
} // namespace vgpu::ctl
