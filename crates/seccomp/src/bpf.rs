//! Classic BPF, as <linux/bpf_common.h> and <linux/filter.h> spell it,
//! and the layout of `struct seccomp_data` a seccomp filter reads.

// Instruction classes (the low three bits of an opcode).
pub(crate) const LD: u16 = 0x00;
pub(crate) const LDX: u16 = 0x01;
pub(crate) const ST: u16 = 0x02;
pub(crate) const STX: u16 = 0x03;
pub(crate) const ALU: u16 = 0x04;
pub(crate) const JMP: u16 = 0x05;
pub(crate) const RET: u16 = 0x06;
pub(crate) const MISC: u16 = 0x07;
/// The bits of an opcode that name its class.
pub(crate) const CLASS: u16 = 0x07;

// Loads: size and mode.
pub(crate) const W: u16 = 0x00;
pub(crate) const SIZE: u16 = 0x18;
pub(crate) const IMM: u16 = 0x00;
pub(crate) const ABS: u16 = 0x20;
pub(crate) const MEM: u16 = 0x60;
pub(crate) const LEN: u16 = 0x80;
pub(crate) const MODE: u16 = 0xe0;

// ALU operations and conditional jumps: the operation, and its operand
// (`K`, the instruction's constant, unless `SRC_X`).
pub(crate) const OP: u16 = 0xf0;
pub(crate) const SRC_X: u16 = 0x08;
pub(crate) const ADD: u16 = 0x00;
pub(crate) const SUB: u16 = 0x10;
pub(crate) const MUL: u16 = 0x20;
pub(crate) const DIV: u16 = 0x30;
pub(crate) const OR: u16 = 0x40;
pub(crate) const AND: u16 = 0x50;
pub(crate) const LSH: u16 = 0x60;
pub(crate) const RSH: u16 = 0x70;
pub(crate) const NEG: u16 = 0x80;
pub(crate) const MOD: u16 = 0x90;
pub(crate) const XOR: u16 = 0xa0;
pub(crate) const JA: u16 = 0x00;
pub(crate) const JEQ: u16 = 0x10;
pub(crate) const JGT: u16 = 0x20;
pub(crate) const JGE: u16 = 0x30;
pub(crate) const JSET: u16 = 0x40;

// Returns and register moves.
pub(crate) const RET_A: u16 = 0x10;
pub(crate) const TAX: u16 = 0x00;
pub(crate) const TXA: u16 = 0x80;

/// `sizeof(struct seccomp_data)`.
pub(crate) const DATA_LEN: u32 = 64;
/// The offset of `seccomp_data.nr`.
pub(crate) const NR: u32 = 0;
/// The offset of `seccomp_data.arch`.
pub(crate) const ARCH: u32 = 4;

/// `a op b` as classic BPF computes it, for the ALU operations seccomp
/// loads; `None` for a division by zero, a shift by 32 or more, and any
/// other operation (seccomp refuses `MOD`; `NEG` takes no operand).
pub(crate) fn alu(op: u16, a: u32, b: u32) -> Option<u32> {
    Some(match op {
        ADD => a.wrapping_add(b),
        SUB => a.wrapping_sub(b),
        MUL => a.wrapping_mul(b),
        DIV => a.checked_div(b)?,
        OR => a | b,
        AND => a & b,
        XOR => a ^ b,
        LSH if b < 32 => a << b,
        RSH if b < 32 => a >> b,
        _ => return None,
    })
}

/// Whether the conditional jump `op` is taken; `None` for an operation
/// that is no comparison.
pub(crate) fn compare(op: u16, a: u32, b: u32) -> Option<bool> {
    Some(match op {
        JEQ => a == b,
        JGT => a > b,
        JGE => a >= b,
        JSET => a & b != 0,
        _ => return None,
    })
}

/// Hand-written programs for the crate's tests.
#[cfg(test)]
pub(crate) mod hand_written {
    use libc::sock_filter;

    use crate::SeccompProgram;

    /// `AUDIT_ARCH_X86_64`.
    pub(crate) const X86_64: u32 = 0xc000_003e;
    /// `SECCOMP_RET_KILL_THREAD`.
    pub(crate) const KILL: u32 = 0;
    /// `SECCOMP_RET_ALLOW`.
    pub(crate) const ALLOW: u32 = 0x7fff_0000;

    pub(crate) fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
        sock_filter { code, jt, jf, k }
    }

    pub(crate) fn program(instructions: Vec<sock_filter>) -> SeccompProgram {
        SeccompProgram { instructions }
    }

    /// `ld arch; jeq x86_64 or kill`, then `body`.
    pub(crate) fn on_x86_64(body: Vec<sock_filter>) -> SeccompProgram {
        let mut instructions = vec![
            insn(super::LD | super::W | super::ABS, 0, 0, super::ARCH),
            insn(super::JMP | super::JEQ, 1, 0, X86_64),
            insn(super::RET, 0, 0, KILL),
        ];
        instructions.extend(body);
        program(instructions)
    }
}
