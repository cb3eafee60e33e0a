// Command-line parsing: what the backend accepts, and the one-line errors (exit 2) for the rest.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "app/options.h"

namespace vgpu::app {
namespace {

std::variant<Options, ExitNow> parse(std::vector<std::string> args)
{
    args.insert(args.begin(), "vgpu-display");
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    return parse_options(int(argv.size()), argv.data());
}

void expect_refused(std::vector<std::string> args, const std::string& mentions)
{
    auto parsed = parse(args);
    auto* exit_now = std::get_if<ExitNow>(&parsed);
    ASSERT_NE(exit_now, nullptr) << "accepted: " << testing::PrintToString(args);
    EXPECT_EQ(exit_now->code, 2);
    EXPECT_NE(exit_now->text.find(mentions), std::string::npos) << exit_now->text;
    EXPECT_EQ(exit_now->text.find('\n'), std::string::npos) << "not one line: " << exit_now->text;
}

TEST(ParseSize, SuffixesAndPlainNumbers)
{
    EXPECT_EQ(parse_size("1048576").value(), 1048576u);
    EXPECT_EQ(parse_size("4K").value(), 4096u);
    EXPECT_EQ(parse_size("256M").value(), 256ull << 20);
    EXPECT_EQ(parse_size("2g").value(), 2ull << 30);
}

TEST(ParseSize, SignsSpacesAndJunk_AreNotASize)
{
    // strtoull skips leading spaces and accepts a sign: " -1" used to be "unlimited".
    for (const char* text : { " -1", "-1", "+1", " 1", "1 ", "\t5M", "0x10", "", "M", "1MB", "1.5G",
             "18446744073709551616", "0" })
        EXPECT_FALSE(parse_size(text)) << "'" << text << "'";
}

TEST(ParseOptions, MaxHostmemWithASign_Refused)
{
    expect_refused({ "--socket-path", "/tmp/a", "--max-hostmem", " -1" }, "--max-hostmem");
}

TEST(ParseOptions, SamePathForControlAndSocket_Refused)
{
    expect_refused(
        { "--socket-path", "/tmp/vgpu.sock", "--control", "/tmp/vgpu.sock" }, "--control");
    // The same file under another spelling.
    expect_refused(
        { "--socket-path", "/tmp/vgpu.sock", "--control", "/tmp//./vgpu.sock" }, "--control");
}

TEST(ParseOptions, OutputsFrom_QemuByDefault_BackendOnRequest_NothingElse)
{
    auto plain = parse({ "--socket-path", "/tmp/a" });
    ASSERT_TRUE(std::holds_alternative<Options>(plain));
    EXPECT_FALSE(std::get<Options>(plain).outputs_from_backend);
    auto backend = parse({ "--socket-path", "/tmp/a", "--outputs-from", "backend" });
    ASSERT_TRUE(std::holds_alternative<Options>(backend));
    EXPECT_TRUE(std::get<Options>(backend).outputs_from_backend);
    auto qemu = parse({ "--socket-path", "/tmp/a", "--outputs-from", "qemu" });
    ASSERT_TRUE(std::holds_alternative<Options>(qemu));
    EXPECT_FALSE(std::get<Options>(qemu).outputs_from_backend);
    expect_refused({ "--socket-path", "/tmp/a", "--outputs-from", "guest" }, "--outputs-from");
    expect_refused({ "--socket-path", "/tmp/a", "--outputs-from" }, "--outputs-from");
}

TEST(ParseOptions, DifferentPaths_Accepted)
{
    auto parsed = parse(
        { "--socket-path", "/tmp/vgpu.sock", "--control", "/tmp/vgpu-control.sock" });
    ASSERT_TRUE(std::holds_alternative<Options>(parsed));
    EXPECT_EQ(*std::get<Options>(parsed).control_path, "/tmp/vgpu-control.sock");
}

// ---- the configuration file and who started us

// A process as libvirt starts it: no terminal on stderr, a pid file naming the domain.
Environment libvirt_environment(const std::string& config, const std::string& domain = "web")
{
    Environment e;
    e.config_path = config;
    e.pid = 4321;
    e.root = true;
    e.stderr_is_null = true;
    if (!domain.empty())
        e.libvirt = instance::LibvirtStart {
            { 3, domain, domain.size() >= 20, "video0" },
            "/run/libvirt/qemu/3-" + domain + "-video0-vhost-user-gpu.pid",
        };
    return e;
}

std::variant<Options, ExitNow> parse_in(
    const Environment& environment, std::vector<std::string> args)
{
    args.insert(args.begin(), "vgpu-display");
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    return parse_options(int(argv.size()), argv.data(), environment);
}

class OptionsConfig : public testing::Test {
protected:
    void SetUp() override
    {
        m_path = std::filesystem::temp_directory_path()
            / ("vgpu-options-" + std::to_string(::getpid()) + ".conf");
    }
    void TearDown() override { std::filesystem::remove(m_path); }
    std::string write(const std::string& text)
    {
        std::ofstream(m_path) << text;
        return m_path.string();
    }
    std::filesystem::path m_path;
};

TEST_F(OptionsConfig, GlobalLinesThenTheDomainsSectionThenTheCommandLine)
{
    auto path = write("control = /run/vgpu-display/{domain}.control\nblob = true\n"
                      "output = 1280x800\nrelease-timeout = 30\n"
                      "[domain web]\noutput = 1024x768\noutput = 800x600\n"
                      "[domain db]\nblob = false\n");
    auto parsed = parse_in(libvirt_environment(path), { "--fd=3", "--release-timeout", "40" });
    ASSERT_TRUE(std::holds_alternative<Options>(parsed)) << std::get<ExitNow>(parsed).text;
    const auto& o = std::get<Options>(parsed);
    EXPECT_EQ(o.control_path, "/run/vgpu-display/web.control");
    EXPECT_TRUE(o.blob);
    ASSERT_EQ(o.outputs.size(), 2u);
    EXPECT_EQ(o.outputs[0].width, 1024u);
    EXPECT_EQ(o.outputs[1].height, 600u);
    EXPECT_EQ(o.release_timeout.count(), 40); // the command line wins
    EXPECT_EQ(o.config_path, path);
    EXPECT_EQ(o.config_section, "web");
    // Started by libvirt, stderr on /dev/null: the log goes to a file of the domain's.
    EXPECT_EQ(o.log.kind, LogDestination::Kind::File);
    EXPECT_EQ(o.log.path, "/var/log/vgpu-display/web.log");

    auto db = parse_in(libvirt_environment(path, "db"), { "--fd=3" });
    ASSERT_TRUE(std::holds_alternative<Options>(db));
    EXPECT_FALSE(std::get<Options>(db).blob);
    EXPECT_EQ(std::get<Options>(db).outputs[0].width, 1280u);
    // Without libvirt the name is pid-PID, and [domain] sections do not apply.
    auto alone = parse_in(libvirt_environment(path, ""), { "--socket-path", "/tmp/s" });
    ASSERT_TRUE(std::holds_alternative<Options>(alone));
    EXPECT_EQ(std::get<Options>(alone).control_path, "/run/vgpu-display/pid-4321.control");
    EXPECT_EQ(std::get<Options>(alone).log.path, "/var/log/vgpu-display/pid-4321.log");
}

TEST_F(OptionsConfig, AMistakeNamesFileAndLine_AndGoesToTheLog)
{
    auto path = write(
        "log = file:/var/log/vgpu/{domain}-{pid}.log\n[domain web]\n\noutput = 9x9\n");
    auto parsed = parse_in(libvirt_environment(path), { "--fd=3" });
    ASSERT_TRUE(std::holds_alternative<ExitNow>(parsed));
    const auto& exit_now = std::get<ExitNow>(parsed);
    EXPECT_EQ(exit_now.code, 2);
    EXPECT_EQ(exit_now.text,
        "vgpu-display: " + path + ":4: --output 9x9: 9x9 is outside 16x16..4095x4095");
    ASSERT_TRUE(exit_now.log);
    EXPECT_EQ(exit_now.log->path, "/var/log/vgpu/web-4321.log");
    // A key the file may not hold, and one it does not know; CLI11's own checks name the line too.
    write("fd = 3\n");
    EXPECT_EQ(std::get<ExitNow>(parse_in(libvirt_environment(path), { "--fd=3" })).text,
        "vgpu-display: " + path + ":1: 'fd' can only be given on the command line");
    write("\nrelease-timeout = 99999\n");
    auto range = std::get<ExitNow>(parse_in(libvirt_environment(path), { "--fd=3" }));
    EXPECT_EQ(range.text.rfind("vgpu-display: " + path + ":2: --release-timeout", 0), 0u)
        << range.text;
    // A bad log line: the error still has somewhere to go (the default file).
    write("log = relative.log\n");
    auto bad_log = std::get<ExitNow>(parse_in(libvirt_environment(path), { "--fd=3" }));
    EXPECT_NE(bad_log.text.find(":1: --log relative.log: expected stderr, syslog or file:"),
        std::string::npos)
        << bad_log.text;
    ASSERT_TRUE(bad_log.log);
    EXPECT_EQ(bad_log.log->path, "/var/log/vgpu-display/web.log");
    // A file that is named but missing is an error; the default one may be absent.
    std::filesystem::remove(m_path);
    EXPECT_EQ(std::get<ExitNow>(parse_in(libvirt_environment(path), { "--fd=3" })).text,
        "vgpu-display: " + path + ": No such file or directory");
    auto env = libvirt_environment(path);
    env.config_path.reset();
    env.default_config_path = path;
    EXPECT_TRUE(std::holds_alternative<Options>(parse_in(env, { "--fd=3" })));
}

TEST_F(OptionsConfig, CommandLineConfigOptionAndLogDestinations)
{
    auto other = write("log = syslog\nexport = /run/e-{pid}\nexport-guest-memory = on\n");
    auto env = libvirt_environment("/nonexistent.conf");
    auto parsed = parse_in(env, { "--fd=3", "--config", other });
    ASSERT_TRUE(std::holds_alternative<Options>(parsed)) << std::get<ExitNow>(parsed).text;
    EXPECT_EQ(std::get<Options>(parsed).log.kind, LogDestination::Kind::Syslog);
    EXPECT_EQ(std::get<Options>(parsed).export_path, "/run/e-4321");
    EXPECT_TRUE(std::get<Options>(parsed).export_guest_memory);
    auto to_stderr = parse_in(env, { "--fd=3", "--config", other, "--log", "stderr" });
    EXPECT_EQ(std::get<Options>(to_stderr).log.kind, LogDestination::Kind::Stderr);
    write("export-guest-memory = true\n");
    EXPECT_EQ(std::get<ExitNow>(parse_in(env, { "--fd=3", "--config", other })).text,
        "vgpu-display: " + other + ":1: --export-guest-memory needs --export");
    // With a terminal (or a file) on stderr and no --log, stderr it is.
    env.stderr_is_null = false;
    write("\n");
    EXPECT_EQ(std::get<Options>(parse_in(env, { "--fd=3", "--config", other })).log.kind,
        LogDestination::Kind::Stderr);
    EXPECT_FALSE(parse_log_destination("file:"));
    EXPECT_FALSE(parse_log_destination("/var/log/"));
    EXPECT_EQ(parse_log_destination("/var/log/x.log")->path, "/var/log/x.log");
}

} // namespace
} // namespace vgpu::app
