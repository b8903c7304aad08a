//! What the glibc-built `libseccomp.a` needs from a musl build (decision
//! 0055): the one glibc symbol it references that musl lacks.
//!
//! Distributions ship libseccomp's static archive built against glibc
//! only. Its objects call plain libc functions that musl has too, except
//! `__fprintf_chk` (glibc's fortified `fprintf`), which only the export of
//! a filter as pseudo-C (`seccomp_export_pfc`) calls. berth never exports
//! that; should anything call it, it fails as `fprintf` fails, writing
//! nothing.

use std::ffi::{c_char, c_int, c_void};

/// glibc's `int __fprintf_chk(FILE *, int flag, const char *format, ...)`:
/// fails (returns -1, `errno` `ENOSYS`) without writing. Declared without
/// the variadic arguments, which a caller passes in registers and on its own
/// stack (System V x86-64) for the callee to ignore.
///
/// # Safety
/// None needed: it reads none of its arguments.
#[no_mangle]
pub unsafe extern "C" fn __fprintf_chk(
    _stream: *mut c_void,
    _flag: c_int,
    _format: *const c_char,
) -> c_int {
    nix::errno::Errno::ENOSYS.set();
    -1
}
