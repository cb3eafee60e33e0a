// Command-line parsing: what the backend accepts, and the one-line errors (exit 2) for the rest.
#include <gtest/gtest.h>

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

} // namespace
} // namespace vgpu::app
