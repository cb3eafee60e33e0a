// docs/control.md states the control socket's limits; they must be the ones the code enforces.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <string>

#include "control/control_server.h"

namespace vgpu::control {
namespace {

std::string control_doc()
{
    std::ifstream in(VGPU_CONTROL_DOC);
    std::stringstream text;
    text << in.rdbuf();
    // Sentences wrap across lines: compare with single spaces.
    std::string flat;
    for (char c : text.str()) {
        if (c == '\n')
            c = ' ';
        if (c == ' ' && !flat.empty() && flat.back() == ' ')
            continue;
        flat += c;
    }
    return flat;
}

TEST(ControlDoc, QueueLimits_AreTheDefaultsTheServerUses)
{
    ControlLimits limits;
    auto doc = control_doc();
    ASSERT_FALSE(doc.empty()) << VGPU_CONTROL_DOC;
    auto events = fmt::format("once {} MiB are waiting", limits.max_queued_events >> 20);
    auto replies = fmt::format(
        "more than {} MiB of replies waiting", limits.max_queued_replies >> 20);
    auto line = fmt::format("larger than {} MiB", limits.max_message >> 20);
    EXPECT_NE(doc.find(events), std::string::npos) << "docs/control.md should say: " << events;
    EXPECT_NE(doc.find(replies), std::string::npos) << "docs/control.md should say: " << replies;
    EXPECT_NE(doc.find(line), std::string::npos) << "docs/control.md should say: " << line;
}

} // namespace
} // namespace vgpu::control
