#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>

#include "harness/backend_process.h"
#include "vnc/tcp.h"
#include "vnc/web_server.h"

namespace vgpu::vnc {
namespace {

TEST(HttpRequest, HeadInPieces_IncompleteUntilTheBlankLine_ThenHostOriginUpgrade)
{
    std::string head = "GET /websockify HTTP/1.1\r\nHost: 127.0.0.1:6080\r\nupgrade:  websocket\r\n"
                       "Origin: http://127.0.0.1:6080\r\n\r\n";
    auto partial = parse_http_request(head.substr(0, head.size() - 2));
    ASSERT_TRUE(partial);
    EXPECT_FALSE(*partial);
    auto whole = parse_http_request(head + "extra");
    ASSERT_TRUE(whole && *whole);
    EXPECT_EQ((*whole)->method, "GET");
    EXPECT_EQ((*whole)->target, "/websockify");
    EXPECT_EQ((*whole)->host, "127.0.0.1:6080");
    EXPECT_EQ((*whole)->origin, "http://127.0.0.1:6080");
    EXPECT_EQ((*whole)->upgrade, "websocket");
    EXPECT_EQ((*whole)->header_bytes, head.size());
}

TEST(HttpRequest, Malformed_AreErrors)
{
    EXPECT_FALSE(parse_http_request("GET\r\n\r\n"));
    EXPECT_FALSE(parse_http_request("GET / FTP/1.0\r\n\r\n"));
    EXPECT_FALSE(parse_http_request("GET / HTTP/1.1\r\nno colon here\r\n\r\n"));
    EXPECT_FALSE(parse_http_request(std::string(20000, 'x')));
}

class ResolveTarget : public ::testing::Test {
protected:
    void SetUp() override
    {
        root = harness::make_temp_dir();
        ::mkdir((root + "/novnc").c_str(), 0755);
        std::ofstream(root + "/index.html") << "page";
        std::ofstream(root + "/novnc/rfb.js") << "js";
        std::ofstream(root + "/.secret") << "no";
    }
    std::string root;
};

TEST_F(ResolveTarget, FilesUnderTheRoot_RootIsIndex_QueryIgnored_PercentDecoded)
{
    EXPECT_EQ(resolve_target(root, "/").path, root + "/index.html");
    EXPECT_EQ(resolve_target(root, "/?scale=1").path, root + "/index.html");
    EXPECT_EQ(resolve_target(root, "/novnc/rfb.js").path, root + "/novnc/rfb.js");
    EXPECT_EQ(resolve_target(root, "/novnc/%72fb.js").path, root + "/novnc/rfb.js");
    EXPECT_EQ(resolve_target(root, "//novnc//rfb.js").status, 200);
}

TEST_F(ResolveTarget, ParentsHiddenFilesNulAndMissing_AreRefused)
{
    EXPECT_EQ(resolve_target(root, "/../etc/passwd").status, 403);
    EXPECT_EQ(resolve_target(root, "/novnc/%2e%2e/%2e%2e/etc/passwd").status, 403);
    EXPECT_EQ(resolve_target(root, "/.secret").status, 403);
    EXPECT_EQ(resolve_target(root, "/index.html%00.js").status, 400);
    EXPECT_EQ(resolve_target(root, "/bad%zz").status, 400);
    EXPECT_EQ(resolve_target(root, "index.html").status, 400);
    EXPECT_EQ(resolve_target(root, "/missing.js").status, 404);
}

TEST(ContentType, ModulesAreJavascript)
{
    EXPECT_EQ(content_type("/a/rfb.js"), "text/javascript; charset=utf-8");
    EXPECT_EQ(content_type("/index.html"), "text/html; charset=utf-8");
    EXPECT_EQ(content_type("/x.bin"), "application/octet-stream");
}

TEST(Endpoint, Ipv4Ipv6Localhost_LoopbackKnown)
{
    auto a = parse_endpoint("127.0.0.1:5900");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->port(), 5900);
    EXPECT_TRUE(a->loopback());
    EXPECT_EQ(a->host_port(), "127.0.0.1:5900");
    auto b = parse_endpoint("[::1]:0");
    ASSERT_TRUE(b);
    EXPECT_TRUE(b->loopback());
    EXPECT_EQ(b->family(), AF_INET6);
    auto c = parse_endpoint("localhost:80");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->host_port(), "127.0.0.1:80");
    auto d = parse_endpoint("0.0.0.0:5901");
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->loopback());
    auto e = parse_endpoint(":5902");
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->loopback());
}

TEST(Endpoint, Malformed_SayWhatIsWrong)
{
    EXPECT_NE(parse_endpoint("5900").error().message.find("ADDRESS:PORT"), std::string::npos);
    EXPECT_NE(
        parse_endpoint("127.0.0.1:99999").error().message.find("0 to 65535"), std::string::npos);
    EXPECT_NE(parse_endpoint("127.0.0.1:").error().message.find("0 to 65535"), std::string::npos);
    EXPECT_NE(parse_endpoint("example.org:5900").error().message.find("not looked up"),
        std::string::npos);
    EXPECT_NE(parse_endpoint("[fe80::zz]:1").error().message.find("IPv6"), std::string::npos);
}

} // namespace
} // namespace vgpu::vnc
