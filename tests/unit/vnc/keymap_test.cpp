#include <gtest/gtest.h>

#include "vnc/keymap.h"

namespace vgpu::vnc {
namespace {

TEST(Keymap, LettersAndDigits_BothCasesNameOneKey)
{
    EXPECT_EQ(qcode_for_keysym('a'), "a");
    EXPECT_EQ(qcode_for_keysym('A'), "a");
    EXPECT_EQ(qcode_for_keysym('z'), "z");
    EXPECT_EQ(qcode_for_keysym('0'), "0");
    EXPECT_EQ(qcode_for_keysym('9'), "9");
}

TEST(Keymap, ShiftedSymbols_AreTheKeysThatTypeThemOnAUsLayout)
{
    EXPECT_EQ(qcode_for_keysym('!'), "1");
    EXPECT_EQ(qcode_for_keysym('@'), "2");
    EXPECT_EQ(qcode_for_keysym(')'), "0");
    EXPECT_EQ(qcode_for_keysym('_'), "minus");
    EXPECT_EQ(qcode_for_keysym('+'), "equal");
    EXPECT_EQ(qcode_for_keysym('{'), "bracket_left");
    EXPECT_EQ(qcode_for_keysym('|'), "backslash");
    EXPECT_EQ(qcode_for_keysym(':'), "semicolon");
    EXPECT_EQ(qcode_for_keysym('"'), "apostrophe");
    EXPECT_EQ(qcode_for_keysym('~'), "grave_accent");
    EXPECT_EQ(qcode_for_keysym('<'), "comma");
    EXPECT_EQ(qcode_for_keysym('?'), "slash");
    EXPECT_EQ(qcode_for_keysym(' '), "spc");
}

TEST(Keymap, FunctionKeysModifiersAndKeypad_HaveTheirQcodes)
{
    EXPECT_EQ(qcode_for_keysym(0xff0d), "ret");
    EXPECT_EQ(qcode_for_keysym(0xff1b), "esc");
    EXPECT_EQ(qcode_for_keysym(0xff08), "backspace");
    EXPECT_EQ(qcode_for_keysym(0xffbe), "f1");
    EXPECT_EQ(qcode_for_keysym(0xffc9), "f12");
    EXPECT_EQ(qcode_for_keysym(0xffe1), "shift");
    EXPECT_EQ(qcode_for_keysym(0xffe4), "ctrl_r");
    EXPECT_EQ(qcode_for_keysym(0xffe9), "alt");
    EXPECT_EQ(qcode_for_keysym(0xffeb), "meta_l");
    EXPECT_EQ(qcode_for_keysym(0xff51), "left");
    EXPECT_EQ(qcode_for_keysym(0xffff), "delete");
    EXPECT_EQ(qcode_for_keysym(0xffb5), "kp_5");
    EXPECT_EQ(qcode_for_keysym(0xff8d), "kp_enter");
}

TEST(Keymap, KeysymsNoUsKeyTypes_HaveNone)
{
    EXPECT_TRUE(qcode_for_keysym(0x00e9).empty()); // eacute
    EXPECT_TRUE(qcode_for_keysym(0x20ac).empty()); // EuroSign
    EXPECT_TRUE(qcode_for_keysym(0).empty());
    EXPECT_TRUE(qcode_for_keysym(0xffffffff).empty());
}

} // namespace
} // namespace vgpu::vnc
