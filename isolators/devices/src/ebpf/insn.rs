//! eBPF instructions: the kernel's 8-byte `struct bpf_insn`, and the few
//! opcodes a device filter needs.

/// `BPF_LDX | BPF_MEM | BPF_W`: `dst = *(u32 *)(src + off)`.
pub const LDX_MEM_W: u8 = 0x61;
/// `BPF_ALU64 | BPF_AND | BPF_K`: `dst &= imm`.
pub const AND64_IMM: u8 = 0x57;
/// `BPF_ALU64 | BPF_RSH | BPF_K`: `dst >>= imm`.
pub const RSH64_IMM: u8 = 0x77;
/// `BPF_ALU64 | BPF_MOV | BPF_K`: `dst = imm`.
pub const MOV64_IMM: u8 = 0xb7;
/// `BPF_ALU64 | BPF_MOV | BPF_X`: `dst = src`.
pub const MOV64_REG: u8 = 0xbf;
/// `BPF_JMP | BPF_JNE | BPF_K`: `if dst != imm goto +off`.
pub const JNE_IMM: u8 = 0x55;
/// `BPF_JMP | BPF_JNE | BPF_X`: `if dst != src goto +off`.
pub const JNE_REG: u8 = 0x5d;
/// `BPF_JMP | BPF_EXIT`: return `r0`.
pub const EXIT: u8 = 0x95;

/// One instruction, laid out as the kernel's `struct bpf_insn` (code,
/// destination register in the low and source register in the high nibble
/// of the second byte, offset, immediate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// The opcode.
    pub code: u8,
    regs: u8,
    /// The jump or memory offset.
    pub off: i16,
    /// The immediate operand.
    pub imm: i32,
}

impl Insn {
    /// An instruction from its parts (registers 0 to 10).
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }

    /// The destination register.
    pub fn dst(&self) -> u8 {
        self.regs & 0x0f
    }

    /// The source register.
    pub fn src(&self) -> u8 {
        self.regs >> 4
    }

    /// `dst = *(u32 *)(src + off)`.
    pub const fn load_u32(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(LDX_MEM_W, dst, src, off, 0)
    }

    /// `dst = imm`.
    pub const fn mov_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(MOV64_IMM, dst, 0, 0, imm)
    }

    /// `exit` (return `r0`).
    pub const fn exit() -> Insn {
        Insn::new(EXIT, 0, 0, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_struct_bpf_insn() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        let insn = Insn::new(JNE_REG, 1, 3, -2, 7);
        assert_eq!((insn.dst(), insn.src()), (1, 3));
        // SAFETY: Insn is repr(C), 8 bytes, no padding.
        let bytes: [u8; 8] = unsafe { std::mem::transmute(insn) };
        let mut expected = vec![0x5d, 0x31];
        expected.extend_from_slice(&(-2i16).to_ne_bytes());
        expected.extend_from_slice(&7i32.to_ne_bytes());
        assert_eq!(bytes.to_vec(), expected);
    }
}
