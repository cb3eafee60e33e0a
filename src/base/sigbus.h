// Surviving a shared mapping whose file shrinks under us. Guest RAM is the frontend's memfd (or
// file): if the frontend truncates it after we mapped it, touching the lost pages raises SIGBUS
// and would kill the backend, and with it every other peer. Mappings of peer-owned files are
// registered here; the SIGBUS handler replaces the lost part of such a mapping with anonymous
// zero pages (the access completes, reading zeros), counts the fault and signals an eventfd, so
// that the loop drops the frontend that did it. A SIGBUS anywhere else keeps its default action.
// QEMU's memory-backend-memfd seals its memfd against shrinking (F_SEAL_SHRINK) by default: such
// a mapping never faults (GuestMemory logs which regions are sealed).
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/result.h"

namespace vgpu::sigbus {

// Installs the handler (once per process; later calls do nothing).
Result<void> install();
// The eventfd that becomes readable after a fault in a protected mapping (-1 before install()).
int notify_fd();
// Faults recovered so far.
uint64_t faults();

// Registers [begin, begin + size) (false when the table of 64 mappings is full: the mapping is
// then unprotected). unprotect() before unmapping.
bool protect(void* begin, size_t size);
void unprotect(void* begin);

} // namespace vgpu::sigbus
