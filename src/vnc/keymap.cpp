#include "vnc/keymap.h"

#include <algorithm>
#include <array>

namespace vgpu::vnc {

namespace {

struct Entry {
    uint32_t keysym;
    std::string_view qcode;
};

// Sorted by keysym (the static_assert below); from X11's keysymdef.h and QEMU's qapi/ui.json.
constexpr std::array KEYS = std::to_array<Entry>({
    { 0x0020, "spc" }, // space
    { 0x0021, "1" }, // exclam
    { 0x0022, "apostrophe" }, // quotedbl
    { 0x0023, "3" }, // numbersign
    { 0x0024, "4" }, // dollar
    { 0x0025, "5" }, // percent
    { 0x0026, "7" }, // ampersand
    { 0x0027, "apostrophe" },
    { 0x0028, "9" }, // parenleft
    { 0x0029, "0" }, // parenright
    { 0x002a, "8" }, // asterisk
    { 0x002b, "equal" }, // plus
    { 0x002c, "comma" },
    { 0x002d, "minus" },
    { 0x002e, "dot" }, // period
    { 0x002f, "slash" },
    { 0x003a, "semicolon" }, // colon
    { 0x003b, "semicolon" },
    { 0x003c, "comma" }, // less
    { 0x003d, "equal" },
    { 0x003e, "dot" }, // greater
    { 0x003f, "slash" }, // question
    { 0x0040, "2" }, // at
    { 0x005b, "bracket_left" },
    { 0x005c, "backslash" },
    { 0x005d, "bracket_right" },
    { 0x005e, "6" }, // asciicircum
    { 0x005f, "minus" }, // underscore
    { 0x0060, "grave_accent" },
    { 0x007b, "bracket_left" }, // braceleft
    { 0x007c, "backslash" }, // bar
    { 0x007d, "bracket_right" }, // braceright
    { 0x007e, "grave_accent" }, // asciitilde
    { 0xfe03, "alt_r" }, // ISO_Level3_Shift (AltGr)
    { 0xfe20, "tab" }, // ISO_Left_Tab (shift-tab)
    { 0xff08, "backspace" },
    { 0xff09, "tab" },
    { 0xff0d, "ret" }, // Return
    { 0xff13, "pause" },
    { 0xff14, "scroll_lock" },
    { 0xff15, "sysrq" },
    { 0xff1b, "esc" },
    { 0xff50, "home" },
    { 0xff51, "left" },
    { 0xff52, "up" },
    { 0xff53, "right" },
    { 0xff54, "down" },
    { 0xff55, "pgup" }, // Prior
    { 0xff56, "pgdn" }, // Next
    { 0xff57, "end" },
    { 0xff61, "print" },
    { 0xff63, "insert" },
    { 0xff67, "menu" },
    { 0xff7f, "num_lock" },
    { 0xff8d, "kp_enter" },
    { 0xff95, "kp_7" }, // KP_Home
    { 0xff96, "kp_4" }, // KP_Left
    { 0xff97, "kp_8" }, // KP_Up
    { 0xff98, "kp_6" }, // KP_Right
    { 0xff99, "kp_2" }, // KP_Down
    { 0xff9a, "kp_9" }, // KP_Prior
    { 0xff9b, "kp_3" }, // KP_Next
    { 0xff9c, "kp_1" }, // KP_End
    { 0xff9d, "kp_5" }, // KP_Begin
    { 0xff9e, "kp_0" }, // KP_Insert
    { 0xff9f, "kp_decimal" }, // KP_Delete
    { 0xffaa, "kp_multiply" },
    { 0xffab, "kp_add" },
    { 0xffac, "kp_comma" }, // KP_Separator
    { 0xffad, "kp_subtract" },
    { 0xffae, "kp_decimal" },
    { 0xffaf, "kp_divide" },
    { 0xffb0, "kp_0" },
    { 0xffb1, "kp_1" },
    { 0xffb2, "kp_2" },
    { 0xffb3, "kp_3" },
    { 0xffb4, "kp_4" },
    { 0xffb5, "kp_5" },
    { 0xffb6, "kp_6" },
    { 0xffb7, "kp_7" },
    { 0xffb8, "kp_8" },
    { 0xffb9, "kp_9" },
    { 0xffbd, "kp_equals" },
    { 0xffbe, "f1" },
    { 0xffbf, "f2" },
    { 0xffc0, "f3" },
    { 0xffc1, "f4" },
    { 0xffc2, "f5" },
    { 0xffc3, "f6" },
    { 0xffc4, "f7" },
    { 0xffc5, "f8" },
    { 0xffc6, "f9" },
    { 0xffc7, "f10" },
    { 0xffc8, "f11" },
    { 0xffc9, "f12" },
    { 0xffe1, "shift" }, // Shift_L
    { 0xffe2, "shift_r" },
    { 0xffe3, "ctrl" }, // Control_L
    { 0xffe4, "ctrl_r" },
    { 0xffe5, "caps_lock" },
    { 0xffe7, "meta_l" },
    { 0xffe8, "meta_r" },
    { 0xffe9, "alt" }, // Alt_L
    { 0xffea, "alt_r" },
    { 0xffeb, "meta_l" }, // Super_L
    { 0xffec, "meta_r" }, // Super_R
    { 0xffff, "delete" },
});

static_assert(std::is_sorted(
    KEYS.begin(), KEYS.end(), [](const Entry& a, const Entry& b) { return a.keysym < b.keysym; }));

// Letters and digits, one qcode each for both cases.
constexpr std::array<std::string_view, 26> LETTERS = { "a", "b", "c", "d", "e", "f", "g", "h", "i",
    "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z" };
constexpr std::array<std::string_view, 10> DIGITS = { "0", "1", "2", "3", "4", "5", "6", "7", "8",
    "9" };

} // namespace

std::string_view qcode_for_keysym(uint32_t keysym)
{
    if (keysym >= 'a' && keysym <= 'z')
        return LETTERS[keysym - 'a'];
    if (keysym >= 'A' && keysym <= 'Z')
        return LETTERS[keysym - 'A'];
    if (keysym >= '0' && keysym <= '9')
        return DIGITS[keysym - '0'];
    auto it = std::lower_bound(
        KEYS.begin(), KEYS.end(), keysym, [](const Entry& e, uint32_t k) { return e.keysym < k; });
    if (it != KEYS.end() && it->keysym == keysym)
        return it->qcode;
    return {};
}

} // namespace vgpu::vnc
