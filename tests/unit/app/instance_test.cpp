// The configuration file, libvirt's pid file names and the instance records (app/instance/).
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "app/instance/config_file.h"
#include "app/instance/libvirt.h"
#include "app/instance/registry.h"

namespace vgpu::instance {
namespace {

KeyKind rules(std::string_view key)
{
    if (key == "output")
        return KeyKind::Repeatable;
    if (key == "blob")
        return KeyKind::Flag;
    if (key == "fd")
        return KeyKind::CommandLineOnly;
    if (key == "control" || key == "log" || key == "release-timeout")
        return KeyKind::Single;
    return KeyKind::Unknown;
}

std::string error_of(std::string_view text)
{
    auto parsed = parse_config(text, "/etc/v.conf", rules);
    return parsed ? std::string("accepted") : parsed.error().message;
}

TEST(ConfigFile, SectionsCommentsQuotesAndRepeatableKeys)
{
    auto config = parse_config(
        "# comment\n; another\n\n  control = /run/{domain}.sock  \n"
        "output = 1280x800\noutput=640x480\nblob = yes\n"
        "[domain web-1]\nlog = \" file:/x \"\n[ domain  db ]\ncontrol = /c\n",
        "/etc/v.conf", rules);
    ASSERT_TRUE(config) << config.error().message;
    ASSERT_EQ(config->global.size(), 4u);
    EXPECT_EQ(config->global[0].key, "control");
    EXPECT_EQ(config->global[0].value, "/run/{domain}.sock");
    EXPECT_EQ(config->global[0].line, 4u);
    EXPECT_EQ(config->global[2].value, "640x480");
    ASSERT_EQ(config->domains.size(), 2u);
    EXPECT_EQ(config->domains[0].domain, "web-1");
    EXPECT_EQ(config->domains[0].entries[0].value, " file:/x ");
    EXPECT_EQ(config->domains[1].domain, "db");
    EXPECT_EQ(config->domains[1].line, 10u);
}

TEST(ConfigFile, EachMistakeIsOneLineNamingFileAndLine)
{
    EXPECT_EQ(error_of("controll = /x\n"), "/etc/v.conf:1: unknown key 'controll'");
    EXPECT_EQ(error_of("\nfd = 3\n"), "/etc/v.conf:2: 'fd' can only be given on the command line");
    EXPECT_EQ(error_of("control /x\n"), "/etc/v.conf:1: expected 'key = value'");
    EXPECT_EQ(error_of("= /x\n"), "/etc/v.conf:1: expected 'key = value'");
    EXPECT_EQ(error_of("control =\n"), "/etc/v.conf:1: control: no value");
    EXPECT_EQ(error_of("control = /a\ncontrol = /b\n"),
        "/etc/v.conf:2: 'control' again in the same section");
    EXPECT_EQ(
        error_of("blob = maybe\n"), "/etc/v.conf:1: blob: expected true or false, not 'maybe'");
    EXPECT_EQ(error_of("[global]\n"),
        "/etc/v.conf:1: unknown section [global] (sections are [domain NAME])");
    EXPECT_EQ(error_of("[domain]\n"), "/etc/v.conf:1: [domain] needs the domain's name");
    EXPECT_EQ(error_of("[domain a\n"), "/etc/v.conf:1: a section is [domain NAME]");
    EXPECT_EQ(error_of("[domain a]\n[domain a]\n"), "/etc/v.conf:2: a second [domain a] section");
    EXPECT_EQ(error_of("control = /a\x01\n"), "/etc/v.conf:1: a control character in the line");
    // The same key in another section is no repetition.
    EXPECT_EQ(error_of("control = /a\n[domain x]\ncontrol = /b\n"), "accepted");
}

TEST(ConfigFile, DomainSectionReplacesTheKeysItNames)
{
    auto config = parse_config("control = /g\noutput = 100x100\noutput = 200x200\nblob = true\n"
                               "[domain web]\noutput = 300x300\ncontrol = /w\n",
        "f", rules)
                      .release_value();
    auto global = select_entries(config, std::nullopt).release_value();
    EXPECT_EQ(global.size(), 4u);
    auto other = select_entries(config, DomainIdentity { "db", false }).release_value();
    EXPECT_EQ(other.size(), 4u);
    auto web = select_entries(config, DomainIdentity { "web", false }).release_value();
    ASSERT_EQ(web.size(), 3u); // blob from the global lines; both outputs replaced by one
    EXPECT_EQ(web[0].key, "blob");
    EXPECT_EQ(web[1].value, "300x300");
    EXPECT_EQ(web[2].value, "/w");
}

TEST(ConfigFile, ACutShortNameMatchesOneSectionByPrefix_OrFailsWhenAmbiguous)
{
    auto config = parse_config("[domain a-very-long-domain-name-one]\ncontrol = /1\n"
                               "[domain another-long-domain-name]\ncontrol = /2\n",
        "f", rules)
                      .release_value();
    // libvirt's pid file says the first 20 bytes.
    auto one = select_entries(config, DomainIdentity { "a-very-long-domain-n", true });
    ASSERT_TRUE(one);
    ASSERT_EQ(one->size(), 1u);
    EXPECT_EQ((*one)[0].value, "/1");
    // Without the cut-short mark a prefix is no match.
    EXPECT_TRUE(select_entries(config, DomainIdentity { "a-very-long-domain-n", false })->empty());
    auto twice = parse_config("[domain abcdefghijklmnopqrst-1]\ncontrol = /1\n"
                              "[domain abcdefghijklmnopqrst-2]\ncontrol = /2\n",
        "f", rules)
                     .release_value();
    auto ambiguous = select_entries(twice, DomainIdentity { "abcdefghijklmnopqrst", true });
    ASSERT_FALSE(ambiguous);
    EXPECT_NE(
        ambiguous.error().message.find("starts both [domain abcdefghijklmnopqrst-1] (line 1)"),
        std::string::npos)
        << ambiguous.error().message;
}

TEST(ConfigFile, Placeholders)
{
    Substitutions s { "web", 42 };
    EXPECT_EQ(expand("/run/{domain}-{pid}.sock", s).value(), "/run/web-42.sock");
    EXPECT_EQ(expand("/a{{b}", s).value(), "/a{b}");
    EXPECT_EQ(expand("/a/b", s).value(), "/a/b");
    EXPECT_EQ(expand("/{name}", s).error().message,
        "unknown placeholder {name} (known: {domain}, {pid})");
    EXPECT_FALSE(expand("/{domain", s));
}

TEST(ConfigFile, LoadNamesTheFileWhenItCannotBeRead)
{
    auto missing = load_config("/nonexistent/vgpu.conf", rules);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().message, "/nonexistent/vgpu.conf: No such file or directory");
}

TEST(LibvirtPidFile, NamesAliasesAndCutShortNames)
{
    auto plain = parse_pid_file_name("1-web-video0-vhost-user-gpu.pid");
    ASSERT_TRUE(plain);
    EXPECT_EQ(plain->id, 1);
    EXPECT_EQ(plain->name, "web");
    EXPECT_EQ(plain->alias, "video0");
    EXPECT_FALSE(plain->maybe_truncated);
    // Dashes in the name, a second video device, a user alias.
    auto dashed = parse_pid_file_name("12-my-vm-2-video1-vhost-user-gpu.pid");
    ASSERT_TRUE(dashed);
    EXPECT_EQ(dashed->id, 12);
    EXPECT_EQ(dashed->name, "my-vm-2");
    EXPECT_EQ(dashed->alias, "video1");
    auto user = parse_pid_file_name("3-vm-ua-gpu-main-vhost-user-gpu.pid");
    ASSERT_TRUE(user);
    EXPECT_EQ(user->name, "vm");
    EXPECT_EQ(user->alias, "ua-gpu-main");
    auto cut = parse_pid_file_name("7-abcdefghijklmnopqrst-video0-vhost-user-gpu.pid");
    ASSERT_TRUE(cut);
    EXPECT_TRUE(cut->maybe_truncated);
    for (const char* other :
        { "web.pid", "x-web-video0-vhost-user-gpu.pid", "1-video0-vhost-user-gpu.pid",
            "-web-video0-vhost-user-gpu.pid", "1-web-vhost-user-gpu.pid" })
        EXPECT_FALSE(parse_pid_file_name(other)) << other;
}

TEST(LibvirtPidFile, ListedOnlyWhenTheProcessLives)
{
    auto dir = std::filesystem::temp_directory_path()
        / ("vgpu-libvirt-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "1-web-video0-vhost-user-gpu.pid") << ::getpid() << "\n";
    std::ofstream(dir / "2-gone-video0-vhost-user-gpu.pid") << 999999999 << "\n";
    std::ofstream(dir / "3-junk-video0-vhost-user-gpu.pid") << "12ab\n";
    std::ofstream(dir / "web.pid") << ::getpid() << "\n";
    auto found = list_libvirt_backends(dir.string());
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].pid, ::getpid());
    EXPECT_EQ(found[0].name.name, "web");
    // A cut-short name is completed from the status file with the same id.
    std::ofstream(dir / "4-abcdefghijklmnopqrst-video0-vhost-user-gpu.pid") << ::getpid() << "\n";
    std::ofstream(dir / "abcdefghijklmnopqrstuvw.xml")
        << "<domstatus state='running'>\n  <domain type='qemu' id='4'>\n    <name>x</name>\n";
    std::ofstream(dir / "abcdefghijklmnopqrstzzz.xml")
        << "<domstatus>\n  <domain type='qemu' id='9'>\n";
    auto cut = parse_pid_file_name("4-abcdefghijklmnopqrst-video0-vhost-user-gpu.pid").value();
    EXPECT_EQ(full_domain_name(dir.string(), cut), "abcdefghijklmnopqrstuvw");
    std::filesystem::remove_all(dir);
}

TEST(InstanceRecord, RoundTripAndStaleRecordsSkipped)
{
    auto dir = std::filesystem::temp_directory_path()
        / ("vgpu-records-" + std::to_string(::getpid()));
    InstanceRecord record;
    record.pid = ::getpid();
    record.domain = "web";
    record.alias = "video0";
    record.control = "/run/vgpu-display/web.control";
    record.log = "/var/log/vgpu-display/web.log";
    record.version = "0.1.0";
    auto parsed = parse_record(record_json(record));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->domain, "web");
    EXPECT_EQ(parsed->control, record.control);
    EXPECT_FALSE(parsed->export_path);
    EXPECT_FALSE(parse_record("{\"pid\": \"1\"}"));
    EXPECT_FALSE(parse_record("not json"));
    // This test program is not vgpu-display: its record is written but not read back as a backend;
    // a dead pid's record is removed by the next write.
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "999999999.json") << "{\"pid\": 999999999}";
    ASSERT_TRUE(write_record(dir.string(), record));
    EXPECT_TRUE(std::filesystem::exists(dir / (std::to_string(::getpid()) + ".json")));
    EXPECT_FALSE(std::filesystem::exists(dir / "999999999.json"));
    EXPECT_TRUE(read_records(dir.string()).empty());
    remove_record(dir.string(), ::getpid());
    EXPECT_FALSE(std::filesystem::exists(dir / (std::to_string(::getpid()) + ".json")));
    std::filesystem::remove_all(dir);
}

} // namespace
} // namespace vgpu::instance
