// What VNC's key events name (X11 keysyms, RFB §7.5.4) as QEMU names keys (the QKeyCode values of
// QMP's input-send-event), for a US keyboard layout. VNC carries symbols, not keys: a client
// sends Shift_L and then 'A' or '!', so the shifted symbols map to the key that types them
// ('!' is the key '1') and the guest, which saw the shift, makes the symbol again.
#pragma once

#include <cstdint>
#include <string_view>

namespace vgpu::vnc {

// The qcode of `keysym`, or an empty view for a keysym no US key types.
std::string_view qcode_for_keysym(uint32_t keysym);

} // namespace vgpu::vnc
